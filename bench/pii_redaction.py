"""PII redaction cost per megabyte, from 1 KB to 1 MB inputs: flat when redaction is linear.

For each input kind and size (1 KB, 10 KB, 100 KB, 1 MB) it times ``redact`` and
``find_pii`` together (what logging a request or counting a dataset's PII costs), repeating
small inputs until a sample takes ``--min-seconds``, and prints seconds per MB, best of
``--repeats``, and the ratio of the largest size's figure to the smallest's (1.0 is linear).

Input kinds: ``normal`` (ticket-like sentences with an e-mail, phone, card or IP address in
about one sentence in five), and adversarial texts that made the first implementation
quadratic: ``dotted`` ("1.1.1..."), ``local_domain`` (a local part, "@", and a domain that
never ends), ``digit_space`` ("1 1 1 ..."), ``many_hits`` (an e-mail every 7 characters).

``--module`` times another implementation (a file defining ``redact`` and ``find_pii``), e.g.
the one before issue 15: ``git show <rev>:include/tuneops/pii.py > /tmp/old_pii.py``; with
``--max-bytes`` to skip sizes it would take minutes on.

    .venv/bin/python bench/pii_redaction.py [--repeats 3] [--module /tmp/old_pii.py --max-bytes 100000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import time

SIZES = (1_000, 10_000, 100_000, 1_000_000)
WORDS = "my card was charged twice for order please refund the web chat email support ticket help".split()
PII = ["jane.doe@example.com", "+1 415-555-0199", "4111 1111 1111 1111", "192.168.0.12", "(020) 7946 0018"]


def normal_text(size: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    sentences, length = [], 0
    while length < size:
        words = rng.choices(WORDS, k=rng.randint(6, 14))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), rng.choice(PII))
        sentence = " ".join(words).capitalize() + ". "
        sentences.append(sentence)
        length += len(sentence)
    return "".join(sentences)[:size]


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


INPUTS = {
    "normal": normal_text,
    "dotted": lambda size: _repeat("1.", size),
    "local_domain": lambda size: _repeat("1.", size // 2) + "@" + _repeat("a.", size - size // 2 - 1),
    "digit_space": lambda size: _repeat("1 ", size),
    "many_hits": lambda size: _repeat("x@y.co ", size),
}


def load_pii(path: str | None):
    if path is None:
        import tuneops.core.pii

        return tuneops.core.pii
    spec = importlib.util.spec_from_file_location("pii_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seconds_per_mb(pii, text: str, repeats: int, min_seconds: float) -> float:
    """Best of ``repeats`` samples of redact + find_pii on ``text``, in seconds per MB of text."""
    best = float("inf")
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while True:
            pii.redact(text)
            pii.find_pii(text)
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best / (len(text) / 1_000_000)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.2)
    parser.add_argument("--module", help="time this file's redact/find_pii instead of tuneops.core.pii")
    parser.add_argument("--max-bytes", type=int, default=max(SIZES))
    args = parser.parse_args()
    pii = load_pii(args.module)
    sizes = [s for s in SIZES if s <= args.max_bytes]
    print(f"{'input':<14}" + "".join(f"{s:>12,d} B" for s in sizes) + f"{'largest/smallest':>20}")
    report = {}
    for kind, make in INPUTS.items():
        figures = [seconds_per_mb(pii, make(size), args.repeats, args.min_seconds) for size in sizes]
        ratio = figures[-1] / figures[0]
        report[kind] = {"seconds_per_mb": dict(zip(sizes, figures, strict=True)), "ratio": ratio}
        print(f"{kind:<14}" + "".join(f"{f:>12.3f} s" for f in figures) + f"{ratio:>20.2f}")
    print(json.dumps({"module": args.module or "tuneops.core.pii", "inputs": report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
