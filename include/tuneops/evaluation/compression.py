"""Cheaper inference: a quantized serving variant of a registered (merged) model, gated against it.

Registered versions already hold the LoRA adapter merged into the base weights
(safetensors). ``compare_variants`` scores the merged model and its quantized variant on the
same test, golden and safety examples, applies the recipe's ``compression`` rule (no gated
metric may drop more than ``max_quality_loss``, and the safety floor holds) through the
same gate as candidates, measures size and latency, and publishes a side-by-side report.
The result says which variant to serve.

``int8`` is PyTorch dynamic quantization of the Linear layers (CPU). It is a pure function of
the merged weights, so the variant is produced at load time (``load_model(..., quantize=)``)
rather than stored twice; its size is that of its serialized state dict.
"""

from __future__ import annotations

import html
import io
import json
import logging
import time
from pathlib import Path

from tuneops.config import GateRules, MetricRule, Recipe, load_safety_suite
from tuneops.contracts import DatasetManifest
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore

log = logging.getLogger(__name__)


def model_size_mb(model, model_dir: Path | None = None) -> float:
    """Serialized size: the safetensors files for a merged model, the state dict for a quantized one."""
    if model_dir is not None:
        return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors")) / 2**20
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 2**20


def latency_per_example(model, tokenizer, prompts: list[str], max_new_tokens: int, special: bool) -> float:
    """Seconds per request, one request at a time (what a lone user waits), after one warm-up."""
    from tuneops.models.generation import generate

    generate(model, tokenizer, prompts[:1], max_new_tokens=2, add_special_tokens=special)
    started = time.perf_counter()
    for prompt in prompts:
        generate(
            model,
            tokenizer,
            [prompt],
            max_new_tokens=max_new_tokens,
            batch_size=1,
            add_special_tokens=special,
        )
    return (time.perf_counter() - started) / len(prompts)


def compare_variants(model_name: str, version: str, cfg: Recipe, settings: Settings | None = None) -> dict:
    """Gate the quantized variant that recipe ``cfg`` asks for of ``model_name`` v``version`` against
    the merged model (``cfg`` resolved with the project's settings: its safety suite).

    ``int8`` is a CPU variant, so both models are measured on the CPU then; the bitsandbytes ones
    load on the GPU, and so does the merged model they are compared with.

    Returns ``{"variant", "passed", "deciding_rule", "checks", "merged", "quantized", "report_uri"}``
    where ``variant`` is what to serve ("int8" when it passed, else "merged"). Raises
    ValueError for a version without dataset lineage (nothing to evaluate on).
    """
    from tuneops.core.lineage import FINGERPRINT_TAG, dataset_uri_of
    from tuneops.data.prompts import load_prompt_dataset
    from tuneops.evaluation.evaluate import ModelRef, evaluate_model
    from tuneops.evaluation.gate import decide
    from tuneops.models.generation import load_model
    from tuneops.registry.registry import download_version, registry_client, set_version_tags

    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    client = registry_client(settings)
    mv = client.get_model_version(model_name, version)
    dataset_uri = dataset_uri_of(mv.tags)
    if not dataset_uri:
        raise ValueError(
            f"{model_name} v{version} has no tuneops.dataset_uri tag, so there is no test set to compare variants "
            "on; register versions through llmops_finetune"
        )
    model_dir = download_version(model_name, version, settings)
    dataset_dir = store.fetch_dir(store.key_of(dataset_uri))
    manifest = DatasetManifest.load(dataset_dir)
    suite = load_safety_suite(cfg.eval.safety_suite)
    fingerprint = mv.tags.get(FINGERPRINT_TAG, f"registry:{model_name}/{version}")
    variant = cfg.compression.variant
    refs = {
        "champion": ModelRef("champion", fingerprint, str(model_dir)),
        "candidate": ModelRef("candidate", f"{fingerprint}:{variant}", str(model_dir), quantize=variant),
    }
    evaluations = {
        role: evaluate_model(ref, dataset_dir, manifest.version, cfg.eval, suite, store)
        for role, ref in refs.items()
    }
    rules = GateRules(
        rules={
            m: MetricRule(max_regression_vs_champion=cfg.compression.max_quality_loss)
            for m in cfg.compression.metrics
        },
        safety_floor=cfg.gate.safety_floor,
    )
    decision = decide(rules, evaluations)

    prompts = list(load_prompt_dataset(dataset_dir)["test"]["prompt"][: cfg.compression.latency_examples])
    special = manifest.add_special_tokens
    device = "cpu" if variant == "int8" else "auto"  # both sides where the variant runs
    measured = {}
    for role, ref in refs.items():
        model, tokenizer = load_model(ref.path, quantize=ref.quantize, device=device)
        measured[role] = {
            "size_mb": model_size_mb(model, None if ref.quantize else model_dir),
            "latency_s": latency_per_example(model, tokenizer, prompts, cfg.eval.max_new_tokens, special),
            "metrics": evaluations[role]["metrics"],
        }
    chosen = variant if decision["passed"] else "merged"
    result = {
        "model_name": model_name,
        "version": str(version),
        "variant": chosen,
        "quantization": variant,
        "passed": decision["passed"],
        "deciding_rule": decision["deciding_rule"],
        "checks": decision["checks"],
        "merged": measured["champion"],
        "quantized": measured["candidate"],
    }
    key = f"compression/{model_name}/v{version}/{variant}"
    store.write_bytes(f"{key}/decision.json", json.dumps(result, indent=1, sort_keys=True).encode())
    result["report_uri"] = store.write_bytes(f"{key}/report.html", render_compression_report(result).encode())
    set_version_tags(
        client,
        model_name,
        version,
        {
            f"tuneops.{variant}.gate": "passed" if decision["passed"] else "failed",
            f"tuneops.{variant}.size_mb": f"{measured['candidate']['size_mb']:.2f}",
            "tuneops.merged.size_mb": f"{measured['champion']['size_mb']:.2f}",
            f"tuneops.{variant}.report": result["report_uri"],
        },
    )
    log.info(
        "%s v%s: merged %.1f MB %.3fs/req, %s %.1f MB %.3fs/req; gate %s (%s); serve %s",
        model_name,
        version,
        measured["champion"]["size_mb"],
        measured["champion"]["latency_s"],
        variant,
        measured["candidate"]["size_mb"],
        measured["candidate"]["latency_s"],
        "passed" if decision["passed"] else "FAILED",
        decision["deciding_rule"],
        chosen,
    )
    return result


def render_compression_report(result: dict) -> str:
    """Merged vs quantized, side by side: size, latency, every gated metric, the verdict."""
    e = html.escape
    merged, quant, q = result["merged"], result["quantized"], result["quantization"]
    verdict = "PASSED" if result["passed"] else "FAILED"
    rows = [
        ("size (MB)", f"{merged['size_mb']:.2f}", f"{quant['size_mb']:.2f}"),
        ("latency (s/request, batch 1)", f"{merged['latency_s']:.4f}", f"{quant['latency_s']:.4f}"),
        *(
            (m, f"{merged['metrics'][m]:.4f}", f"{quant['metrics'].get(m, float('nan')):.4f}")
            for m in sorted(merged["metrics"])
        ),
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(result['model_name'])} v{result['version']}: "
        f"merged vs {q}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style></head><body>",
        f"<h1>{e(result['model_name'])} v{result['version']}: merged vs {q}</h1>",
        f"<h2>{q} variant gate {verdict}: serve <code>{e(result['variant'])}</code></h2>",
        f"<p>{e(result['deciding_rule'])}</p><table><tr><th></th><th>merged</th><th>{q}</th></tr>",
        *(f"<tr><td>{e(a)}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows),
        "</table><h3>Rules</h3><ul>",
        *(f"<li>{'pass' if c['passed'] else 'FAIL'}: {e(c['message'])}</li>" for c in result["checks"]),
        "</ul></body></html>",
    ]
    return "\n".join(parts)
