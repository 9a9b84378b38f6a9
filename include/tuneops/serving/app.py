"""REST serving for a registered model: ``POST /generate``, ``POST /feedback``, ``GET /health``.

``create_app(ServingConfig(model_name=...))`` serves ``models:/<name>@<alias>``. The alias
is polled every ``refresh_seconds``; a new version is loaded (and warmed up) beside the one
serving, then swapped in, so a moved alias is picked up without a restart and no request
ever sees a half-loaded model. Requests are batched on the fly: whatever arrives while the
model is busy (up to ``max_batch_size``) is generated together. Every ``/generate`` request is
appended, with PII redacted, to the inference log that ``llmops_monitor`` reads, refused and
failed ones too (``status: "error"`` and the error); feedback goes to ``feedback/`` in the
artifact store, from where corrections become training data. ``/openapi.json`` describes every
answer, and the limits and template fields of the model being served.

Run it with ``tuneops serve --model-name <name>`` (uvicorn).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from tuneops.config import Decoding
from tuneops.core.inference_log import InferenceLog, find_request, log_record, write_feedback
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.core.templates import PromptTemplate
from tuneops.evaluation.formats import correction_problem

log = logging.getLogger(__name__)

# Below this, logits divided by the temperature overflow float32 and sampling fails; it
# would be greedy decoding anyway, which `temperature: 0` asks for.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 5.0
# torch.manual_seed takes 64-bit seeds, numpy 32-bit ones; the spec writes bounds as floats,
# which hold 2**32 - 1 exactly (not 2**63 - 1).
SEED_MAX = 2**32 - 1
# A character that is not whitespace as ``str.strip`` sees it (``str.isspace``), spelled out
# so the spec's ``pattern`` means the same in Python, ECMA and Rust regex engines.
HAS_TEXT = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
INPUT_FIELDS = ("prompt", "messages", "inputs")


class ServingConfig(BaseModel):
    """What to serve and the server's limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    alias: str = "champion"
    variant: Literal["merged", "int8"] = "merged"
    refresh_seconds: float = Field(10.0, gt=0)
    max_prompt_chars: int = Field(8000, ge=1)
    max_new_tokens_limit: int = Field(256, ge=1)
    max_batch_size: int = Field(8, ge=1)
    batch_wait_ms: float = Field(5.0, ge=0)
    log_flush_seconds: float = Field(2.0, gt=0)
    recent_requests: int = Field(10_000, ge=1)


def _valid_unicode(value: str) -> str:
    """``value`` if it is valid Unicode; a lone UTF-16 surrogate (JSON ``"\\ud800"``) is not."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"holds a lone UTF-16 surrogate (\\u{ord(value[exc.start]):04x}) at character {exc.start}: "
                "send valid Unicode text (surrogates only in pairs)"
            ) from None
    return value


def _temperature_in_range(value: float) -> float:
    if value != 0 and not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        raise ValueError(
            f"must be 0 (greedy) or from {MIN_TEMPERATURE} to {MAX_TEMPERATURE} (sampling), not {value}"
        )
    return value


def _whole_float_as_int(value: Any) -> Any:
    # JSON Schema's "integer" includes 76.0; strict validation otherwise refuses floats.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Every string the server accepts: valid Unicode, so it can be tokenized, logged and stored.
Text = Annotated[str, AfterValidator(_valid_unicode)]
# The bounds sit inside the validator, or pydantic writes them to the spec as "ge"/"le", not "minimum".
NewTokens = Annotated[Annotated[int, Field(ge=1)], BeforeValidator(_whole_float_as_int)]
Seed = Annotated[Annotated[int, Field(ge=0, le=SEED_MAX)], BeforeValidator(_whole_float_as_int)]
Temperature = Annotated[
    float,
    AfterValidator(_temperature_in_range),
    WithJsonSchema(
        {"anyOf": [{"const": 0}, {"type": "number", "minimum": MIN_TEMPERATURE, "maximum": MAX_TEMPERATURE}]}
    ),
]


_SOME_MESSAGE_WITH_TEXT = {"minItems": 1, "contains": {"properties": {"content": {"pattern": HAS_TEXT}}}}
_SOME_INPUT_WITH_TEXT = {"minProperties": 1, "not": {"additionalProperties": {"not": {"pattern": HAS_TEXT}}}}


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: Text


class GenerateRequest(BaseModel):
    """Exactly one of ``prompt`` (raw text), ``messages`` (chat) or ``inputs`` (the template's fields).

    ``temperature`` 0 decodes greedily; 0.01 to 5 samples. ``seed`` (0 to 2**32-1) makes
    sampling repeatable. The spec at ``/openapi.json`` also states this server's limits and
    the served model's template fields.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "oneOf": [
                {"required": [name], "properties": {name: {"type": kind}}}
                for name, kind in zip(INPUT_FIELDS, ("string", "array", "object"), strict=True)
            ]
        },
    )

    prompt: Annotated[Text, Field(json_schema_extra={"pattern": HAS_TEXT})] | None = None
    # At least one message with text; at least one input with text (the checks in `Service._prompt`).
    messages: Annotated[list[Message], Field(json_schema_extra=_SOME_MESSAGE_WITH_TEXT)] | None = None
    inputs: Annotated[dict[Text, Text], Field(json_schema_extra=_SOME_INPUT_WITH_TEXT)] | None = None
    max_new_tokens: NewTokens | None = None
    temperature: Temperature | None = None
    top_p: float | None = Field(None, gt=0, le=1)
    seed: Seed | None = None

    @model_validator(mode="after")
    def _one_input(self):
        given = [k for k in INPUT_FIELDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"send exactly one of prompt, messages or inputs (got {given or 'none'})")
        return self

    @property
    def mode(self) -> str:
        return next(k for k in INPUT_FIELDS if getattr(self, k) is not None)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Text = Field(min_length=1)
    rating: Literal["up", "down"]
    correction: Text | None = Field(
        None,
        min_length=1,
        max_length=20_000,
        description="The right answer, in the served model's output format (refused with 422 otherwise).",
    )
    comment: Text | None = Field(None, max_length=2000)


class GenerateResponse(BaseModel):
    request_id: str
    model: str
    version: str
    variant: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    batch_size: int
    latency_ms: float


class FeedbackResponse(BaseModel):
    feedback_id: str
    uri: str


class HealthResponse(BaseModel):
    status: Literal["ok", "loading"]
    model: str
    alias: str
    version: str | None
    variant: str
    loaded_at: str | None
    requests_served: int
    last_error: str | None


class ErrorResponse(BaseModel):
    """What every refused or failed request gets: what was wrong, and the logged request's id."""

    error: str
    request_id: str | None = None


class RequestFailed(Exception):
    """A request the server answers with an error: the HTTP status, the message, the logged request."""

    def __init__(self, status: int, message: str, request_id: str | None = None):
        super().__init__(message)
        self.status = status
        self.request_id = request_id


@dataclass(frozen=True)
class LoadedModel:
    """One fully loaded, warmed-up model version; swapped in whole."""

    name: str
    version: str
    variant: str
    model: Any
    tokenizer: Any
    template: PromptTemplate | None
    decoding: Decoding
    max_new_tokens: int
    max_positions: int
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def load_version(name: str, version: str, variant: str, settings: Settings) -> LoadedModel:
    """Load ``models:/<name>/<version>`` as served, quantized for ``variant="int8"``, and warm it up.

    The weights, tokenizer and template are read as data and loaded with this installed tuneops;
    nothing from the artifact store is executed. Raises ``tuneops.registry.registry.ModelIntegrityError``
    when the weights are not the ones registered.
    """
    from tuneops.models.generation import generate, load_model, quantize_model
    from tuneops.registry.registry import load_version_files

    files = load_version_files(name, version, settings)
    # int8 (dynamic quantization) runs on the CPU only: load there for it, on the GPU if any otherwise.
    merged, tokenizer = load_model(str(files.path), device="cpu" if variant == "int8" else "auto")
    model = quantize_model(merged, variant) if variant != "merged" else merged
    generate(model, tokenizer, ["warm-up"], max_new_tokens=1)
    return LoadedModel(
        name=name,
        version=str(version),
        variant=variant,
        model=model,
        tokenizer=tokenizer,
        template=files.template,
        decoding=files.decoding,
        max_new_tokens=files.max_new_tokens,
        max_positions=int(getattr(model.config, "max_position_embeddings", 0) or 0),
    )


@dataclass
class _Job:
    model: LoadedModel
    prompt: str
    add_special_tokens: bool
    future: asyncio.Future


class Batcher:
    """Collects concurrent requests with the same decoding into one ``generate`` call.

    One generation runs at a time (one worker thread owns the model); what queues meanwhile
    forms the next batch. ``max_size=1`` turns batching off.
    """

    def __init__(self, run_batch, max_size: int, wait_s: float):
        self.run_batch = run_batch
        self.max_size = max_size
        self.wait_s = wait_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=True)

    async def submit(self, model: LoadedModel, key: tuple, prompt: str, add_special_tokens: bool):
        """Generate for ``prompt`` in the next batch of requests with the same ``key`` (decoding)."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(((id(model), *key), _Job(model, prompt, add_special_tokens, future)))
        return await future

    async def _collect(self) -> list:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(batch) < self.max_size:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            groups: dict[tuple, list[_Job]] = {}
            for key, job in await self._collect():
                groups.setdefault(key, []).append(job)
            for key, jobs in groups.items():
                try:
                    results = await loop.run_in_executor(self.executor, self.run_batch, key, jobs)
                except Exception as exc:  # one failed batch fails its requests, not the server
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                for job, result in zip(jobs, results, strict=True):
                    if not job.future.done():
                        job.future.set_result(result)


class Service:
    """The serving state: the loaded model, the alias watcher, the batcher, the logs."""

    def __init__(self, config: ServingConfig, settings: Settings | None = None):
        self.config = config
        self.settings = settings or load_settings()
        self.store = ArtifactStore.from_settings(self.settings)
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.served = 0
        self.log = InferenceLog(self.store, config.log_flush_seconds)
        self.recent: OrderedDict[str, dict] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.batcher = Batcher(self._run_batch, config.max_batch_size, config.batch_wait_ms / 1000)
        # Rendering, token counts, PII redaction and feedback: CPU work kept off the event loop.
        self.executor = ThreadPoolExecutor(thread_name_prefix="requests")
        self._watcher: asyncio.Task | None = None

    # --- model lifecycle ----------------------------------------------------------------

    def refresh(self) -> bool:
        """Load and swap in the alias's version if it moved; returns True when it swapped.

        A version that fails to load is reported in ``/health`` and the one serving stays.
        """
        from tuneops.registry.registry import alias_version

        target = alias_version(self.config.model_name, self.config.alias, self.settings)
        if target is None:
            self.last_error = f"model {self.config.model_name!r} has no '{self.config.alias}' alias yet"
            return False
        if self.current is not None and self.current.version == str(target.version):
            return False
        try:
            loaded = load_version(
                self.config.model_name, str(target.version), self.config.variant, self.settings
            )
        except Exception as exc:
            self.last_error = f"loading {self.config.model_name} v{target.version} failed: {exc}"
            log.exception("keeping v%s: %s", self.current and self.current.version, self.last_error)
            return False
        previous, self.current, self.last_error = self.current, loaded, None
        log.info(
            "serving %s v%s (%s)%s",
            loaded.name,
            loaded.version,
            loaded.variant,
            f", replacing v{previous.version}" if previous else "",
        )
        return True

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.refresh_seconds)
            try:
                await loop.run_in_executor(None, self.refresh)
            except Exception:  # a registry outage must not stop serving the loaded model
                log.exception("alias refresh failed; serving v%s", self.current and self.current.version)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.refresh)
        except Exception as exc:
            self.last_error = f"registry unavailable: {exc}"
            log.exception("initial load failed; will retry every %ss", self.config.refresh_seconds)
        self.batcher.start()
        self.log.start()
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.batcher.stop()
        self.log.stop()
        self.executor.shutdown(wait=True)

    # --- requests -------------------------------------------------------------------------

    def _prompt(self, req: GenerateRequest, model: LoadedModel) -> tuple[str, bool]:
        from tuneops.core.templates import adds_special_tokens, render_prompt

        if req.prompt is not None:
            if not req.prompt.strip():
                raise RequestFailed(422, "prompt is empty; send the text to complete")
            return req.prompt, True
        if req.messages is not None:
            if not req.messages or not any(m.content.strip() for m in req.messages):
                raise RequestFailed(422, "messages are empty; send at least one message with content")
            if not getattr(model.tokenizer, "chat_template", None):
                raise RequestFailed(
                    422, f"{model.name} v{model.version} has no chat template; send prompt or inputs"
                )
            try:
                text = model.tokenizer.apply_chat_template(
                    [m.model_dump() for m in req.messages], tokenize=False, add_generation_prompt=True
                )
            except Exception as exc:  # chat templates refuse some conversations (e.g. roles out of turn)
                raise RequestFailed(422, f"messages do not fit {model.name}'s chat template: {exc}") from exc
            return text, False
        if model.template is None:
            raise RequestFailed(
                422, f"{model.name} v{model.version} has no prompt template; send prompt or messages"
            )
        if not any(v.strip() for v in req.inputs.values()):
            raise RequestFailed(422, "inputs are empty; send the template's fields with text")
        try:
            return render_prompt(model.template, req.inputs, model.tokenizer), adds_special_tokens(
                model.template
            )
        except Exception as exc:
            raise RequestFailed(422, f"inputs do not fit template {model.template.id!r}: {exc}") from exc

    def _decoding(self, req: GenerateRequest, model: LoadedModel) -> tuple[int, Decoding]:
        limit = self.config.max_new_tokens_limit
        max_new = req.max_new_tokens or min(model.max_new_tokens, limit)
        if max_new > limit:
            raise RequestFailed(
                422, f"max_new_tokens {max_new} is over this server's limit of {limit}; ask for fewer"
            )
        decoding = model.decoding
        if req.temperature is not None or req.top_p is not None or req.seed is not None:
            sampled = req.temperature is None or req.temperature > 0
            decoding = decoding.model_copy(
                update={
                    "do_sample": sampled,
                    "temperature": req.temperature if req.temperature else decoding.temperature,
                    "top_p": req.top_p or decoding.top_p,
                    "seed": decoding.seed if req.seed is None else req.seed,
                }
            )
        return max_new, decoding

    def _run_batch(self, key: tuple, jobs: list[_Job]) -> list[dict]:
        from tuneops.models.generation import generate

        _, max_new, decoding_json = key
        model = jobs[0].model
        decoding = Decoding.model_validate_json(decoding_json)
        started = time.monotonic()
        # Chat prompts and template prompts differ in special tokens; batch each kind apart.
        results: dict[int, tuple[str, int]] = {}
        for special in (True, False):
            idx = [i for i, j in enumerate(jobs) if j.add_special_tokens is special]
            if idx:
                counts: list[int] = []
                texts = generate(
                    model.model,
                    model.tokenizer,
                    [jobs[i].prompt for i in idx],
                    max_new_tokens=max_new,
                    batch_size=len(idx),
                    add_special_tokens=special,
                    decoding=decoding,
                    token_counts=counts,
                )
                results.update(zip(idx, zip(texts, counts, strict=True), strict=True))
        elapsed = time.monotonic() - started
        return [
            {
                "text": results[i][0],
                "completion_tokens": results[i][1],
                "batch_size": len(jobs),
                "generate_s": elapsed,
            }
            for i in range(len(jobs))
        ]

    async def offload(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a worker thread, so the event loop keeps answering meanwhile."""
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _fit(self, req: GenerateRequest, model: LoadedModel, prompt: str, special: bool) -> tuple:
        """``(max_new_tokens, decoding, prompt_tokens)``; raises RequestFailed (413) when it does not fit."""
        if len(prompt) > self.config.max_prompt_chars:
            raise RequestFailed(
                413,
                f"prompt is {len(prompt)} characters; the limit is {self.config.max_prompt_chars}: shorten it",
            )
        max_new, decoding = self._decoding(req, model)
        prompt_tokens = len(model.tokenizer(prompt, add_special_tokens=special)["input_ids"])
        if model.max_positions and prompt_tokens + max_new > model.max_positions:
            raise RequestFailed(
                413,
                f"prompt is {prompt_tokens} tokens and max_new_tokens {max_new}; together they exceed the model's "
                f"context of {model.max_positions} tokens: shorten the prompt or ask for fewer tokens",
            )
        return max_new, decoding, prompt_tokens

    async def generate(self, req: GenerateRequest) -> dict:
        """Generate for one request. Raises RequestFailed (4xx refusals, 503, 500) with the request's id.

        Every request is logged, failed ones with ``status: "error"`` and the error text.
        Rendering, token counting and logging (PII redaction) run in worker threads.
        """
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        model = self.current
        prompt, prompt_tokens = req.prompt or "", None
        try:
            if model is None:
                raise RequestFailed(503, self.last_error or "no model loaded yet; retry shortly")
            prompt, special = await self.offload(self._prompt, req, model)
            max_new, decoding, prompt_tokens = await self.offload(self._fit, req, model, prompt, special)
            result = await self.batcher.submit(model, (max_new, decoding.model_dump_json()), prompt, special)
        except Exception as exc:
            failure = (
                exc
                if isinstance(exc, RequestFailed)
                else RequestFailed(500, f"generation failed: {type(exc).__name__}: {exc}")
            )
            failure.request_id = request_id
            record = await self.offload(
                self._failure_record,
                model,
                request_id=request_id,
                status=failure.status,
                error=str(failure),
                started=started,
                mode=req.mode,
                prompt=prompt,
                inputs=req.inputs,
                prompt_tokens=prompt_tokens,
            )
            self.log.append(record)
            if failure is not exc:
                log.error("request %s: %s", request_id, failure, exc_info=exc)
                raise failure from exc
            raise
        latency = time.monotonic() - started
        record = await self.offload(
            log_record,
            request_id=request_id,
            model=model.name,
            version=model.version,
            variant=model.variant,
            alias=self.config.alias,
            mode=req.mode,
            prompt=prompt,
            inputs=req.inputs,
            prompt_tokens=prompt_tokens,
            response=result["text"],
            latency_s=latency,
            completion_tokens=result["completion_tokens"],
            status_code=200,
        )
        self._remember(record)
        self.served += 1
        return {
            "request_id": request_id,
            "model": model.name,
            "version": model.version,
            "variant": model.variant,
            "text": result["text"],
            "prompt_tokens": prompt_tokens,
            "completion_tokens": result["completion_tokens"],
            "batch_size": result["batch_size"],
            "latency_ms": round(latency * 1000, 2),
        }

    def _failure_record(
        self,
        model: LoadedModel | None,
        *,
        request_id: str,
        status: int,
        error: str,
        started: float,
        mode: str | None,
        prompt: str = "",
        inputs: dict | None = None,
        prompt_tokens: int | None = None,
    ) -> dict:
        """The log record of a refused or failed request: what it sent as far as it got parsed, and why.

        The prompt is kept up to ``max_prompt_chars`` (a refused one may be longer), its length in full.
        """
        return log_record(
            request_id=request_id,
            model=self.config.model_name,
            version=model.version if model else None,
            variant=self.config.variant,
            alias=self.config.alias,
            mode=mode,
            prompt=prompt[: self.config.max_prompt_chars],
            prompt_chars=len(prompt),
            inputs=inputs,
            prompt_tokens=prompt_tokens,
            response="",
            latency_s=time.monotonic() - started,
            error=error,
            status_code=status,
        )

    async def refuse(self, body: Any, status: int, error: str) -> str:
        """Log a ``/generate`` body that failed validation (``status``, ``error``); returns its request id.

        Of the body, what parsed is kept: the mode, a text ``prompt`` and text ``inputs``
        (lone surrogates replaced, so the record can be written).
        """
        request_id = uuid.uuid4().hex
        fields = body if isinstance(body, dict) else {}
        given = [k for k in INPUT_FIELDS if fields.get(k) is not None]
        prompt, inputs = fields.get("prompt"), fields.get("inputs")
        if isinstance(inputs, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()
        ):
            inputs = {_printable(k): _printable(v) for k, v in inputs.items()}
        else:
            inputs = None
        record = await self.offload(
            self._failure_record,
            self.current,
            request_id=request_id,
            status=status,
            error=error,
            started=time.monotonic(),
            mode=given[0] if len(given) == 1 else None,
            prompt=_printable(prompt) if isinstance(prompt, str) else "",
            inputs=inputs,
        )
        self.log.append(record)
        return request_id

    def _remember(self, record: dict) -> None:
        self.log.append(record)
        with self._recent_lock:
            self.recent[record["request_id"]] = record
            while len(self.recent) > self.config.recent_requests:
                self.recent.popitem(last=False)

    def feedback(self, req: FeedbackRequest) -> dict:
        with self._recent_lock:
            record = self.recent.get(req.request_id)
        if record is None:
            self.log.flush()
            record = find_request(self.store, req.request_id)
        if record is None:
            raise RequestFailed(
                404, f"unknown request_id {req.request_id!r}: send the request_id that /generate returned"
            )
        if req.correction is not None:
            problem = correction_problem(req.correction, self.current.template if self.current else None)
            if problem:
                raise RequestFailed(422, f"correction does not match the model's output format: {problem}")
        return write_feedback(self.store, record, req.model_dump())

    def health(self) -> dict:
        model = self.current
        return {
            "status": "ok" if model else "loading",
            "model": self.config.model_name,
            "alias": self.config.alias,
            "version": model.version if model else None,
            "variant": self.config.variant,
            "loaded_at": model.loaded_at if model else None,
            "requests_served": self.served,
            "last_error": self.last_error,
        }


def _printable(text: str) -> str:
    """``text`` with any lone UTF-16 surrogate replaced by "?", so it can be encoded and stored."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _validation_message(errors: list[dict]) -> tuple[int, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "request body is not valid JSON: " + "; ".join(e.get("msg", "") for e in errors)
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return 422, "; ".join(parts)


def _template_fields(template: PromptTemplate) -> list[str]:
    """The fields a template's prompt needs from ``inputs`` (``system`` and ``instruction`` it has)."""
    from jinja2 import Environment, meta

    return sorted(
        meta.find_undeclared_variables(Environment().parse(template.prompt)) - {"system", "instruction"}
    )


def _describe_served(spec: dict, config: ServingConfig, model: LoadedModel | None) -> dict:
    """``spec`` stating this server's limits and, once loaded, what the served model accepts.

    ``max_new_tokens`` gets the server's limit; ``inputs`` the template's fields (required);
    a feedback ``correction`` the template's output format; a mode the model cannot serve (no
    template, no chat template) is left out of the spec.
    """
    spec = copy.deepcopy(spec)
    request = spec["components"]["schemas"]["GenerateRequest"]
    props = request["properties"]

    def present(prop: dict) -> dict:
        return next(s for s in prop["anyOf"] if s.get("type") != "null")

    present(props["max_new_tokens"])["maximum"] = config.max_new_tokens_limit
    props["prompt"]["description"] = (
        f"Raw prompt text. A rendered prompt over {config.max_prompt_chars} characters, or over the model's "
        "context in tokens with max_new_tokens, is refused with 413."
    )
    if model is None:
        return spec
    dropped = set()
    if model.template is None:
        dropped.add("inputs")
    else:
        fields = _template_fields(model.template)
        inputs = present(props["inputs"])
        inputs["properties"] = {name: {"type": "string"} for name in fields}
        inputs["required"] = fields
        props["inputs"]["description"] = (
            f"The fields of template {model.template.id!r}; at least one with text."
        )
    if model.template is not None and model.template.output is not None:
        keys = model.template.output.required_keys
        correction = spec["components"]["schemas"]["FeedbackRequest"]["properties"]["correction"]
        correction["description"] = (
            f"The right answer, as template {model.template.id!r} wants it: a JSON object with "
            f"non-empty {', '.join(keys)} (refused with 422 otherwise)."
        )
        present(correction).update(
            contentMediaType="application/json", contentSchema={"type": "object", "required": keys}
        )
    if not getattr(model.tokenizer, "chat_template", None):
        dropped.add("messages")
    for name in dropped:
        del props[name]
    request["oneOf"] = [branch for branch in request["oneOf"] if branch["required"][0] not in dropped]
    return spec


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


def create_app(config: ServingConfig, settings: Settings | None = None):
    """The FastAPI app serving ``config.model_name@config.alias``.

    Its spec (``/openapi.json``) lists every status each operation answers; every error
    body is ``{"error": ..., "request_id": ...}`` (``ErrorResponse``).
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    service = Service(config, settings)

    @asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title=f"tuneops serving: {config.model_name}@{config.alias}", lifespan=lifespan)
    app.state.service = service

    def error_response(
        status: int, message: str, request_id: str | None = None, headers: dict | None = None
    ) -> JSONResponse:
        body = ErrorResponse(error=_printable(message), request_id=request_id)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)

    async def refused(
        request: Request, body: Any, status: int, message: str, headers: dict | None = None
    ) -> JSONResponse:
        """The error answer to a request refused before it reached ``Service``; a ``/generate`` one is logged."""
        request_id = None
        if request.method == "POST" and request.url.path == "/generate":
            request_id = await service.refuse(body, status, _printable(message))
        return error_response(status, message, request_id, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return await refused(request, exc.body, *_validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):  # e.g. a body that is not UTF-8, a wrong method
        return await refused(request, None, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestFailed)
    async def _failed(request: Request, exc: RequestFailed):
        return error_response(exc.status, str(exc), exc.request_id)

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception):  # a bug: answer JSON, as the spec says
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    common = {
        400: _error("The body is not valid JSON."),
        422: _error("The body breaks the schema or the model's rules."),
    }

    @app.post(
        "/generate",
        responses={
            **common,
            413: _error("The prompt is too long (characters, or tokens with max_new_tokens)."),
            500: _error("Generation failed; the request is logged with the error."),
            503: _error("No model is loaded yet."),
        },
    )
    async def generate(req: GenerateRequest) -> GenerateResponse:
        return await service.generate(req)

    @app.post(
        "/feedback",
        responses={
            **common,
            404: _error("No served request has this request_id."),
            500: _error("Storing the feedback failed."),
        },
    )
    async def feedback(req: FeedbackRequest) -> FeedbackResponse:
        return await service.offload(service.feedback, req)

    @app.get("/health", responses={503: {"model": HealthResponse, "description": "No model is loaded yet."}})
    async def health() -> HealthResponse:
        body = service.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    base_spec: dict = {}

    def openapi() -> dict:
        if not base_spec:
            base_spec.update(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    routes=app.routes,
                )
            )
        return _describe_served(base_spec, config, service.current)

    app.openapi = openapi
    return app


def serve(config: ServingConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="info")


class ServerThread:
    """Run the app with uvicorn in a background thread (tests, benchmarks, notebooks).

    ``with ServerThread(app) as url: ...`` starts it on a free loopback port and stops it,
    flushing the inference log, on exit.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the serving app did not start; see the log above")
            time.sleep(0.05)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
