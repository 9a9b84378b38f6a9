"""REST serving for a registered model: ``POST /generate``, ``POST /feedback``, ``GET /health``.

``create_app(ServingConfig(model_name=...))`` serves ``models:/<name>@<alias>``. The alias
is polled every ``refresh_seconds``; a new version is loaded (and warmed up) beside the one
serving, then swapped in, so a moved alias is picked up without a restart and no request
ever sees a half-loaded model. Requests are batched on the fly: whatever arrives while the
model is busy (up to ``max_batch_size``) is generated together. Every request is appended,
with PII redacted, to the inference log that ``llmops_monitor`` reads; feedback goes to
``feedback/`` in the artifact store, from where corrections become training data.

Run it with ``tuneops serve --model-name <name>`` (uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneops.config import Decoding, PromptTemplate
from tuneops.inference import InferenceLog, find_request, log_record, write_feedback
from tuneops.settings import Settings, load_settings
from tuneops.store import ArtifactStore

log = logging.getLogger(__name__)


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


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(BaseModel):
    """Exactly one of ``prompt`` (raw text), ``messages`` (chat) or ``inputs`` (the template's fields)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    messages: list[Message] | None = None
    inputs: dict[str, str] | None = None
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None

    @model_validator(mode="after")
    def _one_input(self):
        given = [k for k in ("prompt", "messages", "inputs") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"send exactly one of prompt, messages or inputs (got {given or 'none'})")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1)
    rating: Literal["up", "down"]
    correction: str | None = Field(None, min_length=1, max_length=20_000)
    comment: str | None = Field(None, max_length=2000)


class BadRequest(ValueError):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
    """Load ``models:/<name>/<version>`` as served, quantized for ``variant="int8"``, and warm it up."""
    import mlflow

    from tuneops.generation import generate, quantize_model
    from tuneops.mlflow_utils import configure_mlflow

    configure_mlflow(settings)
    generator = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    model = quantize_model(generator.model, variant) if variant != "merged" else generator.model
    generate(model, generator.tokenizer, ["warm-up"], max_new_tokens=1)
    return LoadedModel(
        name=name,
        version=str(version),
        variant=variant,
        model=model,
        tokenizer=generator.tokenizer,
        template=generator.template,
        decoding=generator.decoding,
        max_new_tokens=generator.max_new_tokens,
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
        self._watcher: asyncio.Task | None = None

    # --- model lifecycle ----------------------------------------------------------------

    def refresh(self) -> bool:
        """Load and swap in the alias's version if it moved; returns True when it swapped.

        A version that fails to load is reported in ``/health`` and the one serving stays.
        """
        from tuneops.registry import alias_version

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
            "serving %s v%s (%s)%s", loaded.name, loaded.version, loaded.variant,
            f", replacing v{previous.version}" if previous else "",
        )  # fmt: skip
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

    # --- requests -------------------------------------------------------------------------

    def _prompt(self, req: GenerateRequest, model: LoadedModel) -> tuple[str, bool]:
        from tuneops.prompts import adds_special_tokens, render_prompt

        if req.prompt is not None:
            if not req.prompt.strip():
                raise BadRequest(422, "prompt is empty; send the text to complete")
            return req.prompt, True
        if req.messages is not None:
            if not req.messages or not any(m.content.strip() for m in req.messages):
                raise BadRequest(422, "messages are empty; send at least one message with content")
            if not getattr(model.tokenizer, "chat_template", None):
                raise BadRequest(
                    422, f"{model.name} v{model.version} has no chat template; send prompt or inputs"
                )
            text = model.tokenizer.apply_chat_template(
                [m.model_dump() for m in req.messages], tokenize=False, add_generation_prompt=True
            )
            return text, False
        if model.template is None:
            raise BadRequest(
                422, f"{model.name} v{model.version} has no prompt template; send prompt or messages"
            )
        if not any(v.strip() for v in req.inputs.values()):
            raise BadRequest(422, "inputs are empty; send the template's fields with text")
        try:
            return render_prompt(model.template, req.inputs, model.tokenizer), adds_special_tokens(
                model.template
            )
        except Exception as exc:
            raise BadRequest(422, f"inputs do not fit template {model.template.id!r}: {exc}") from exc

    def _decoding(self, req: GenerateRequest, model: LoadedModel) -> tuple[int, Decoding]:
        limit = self.config.max_new_tokens_limit
        max_new = req.max_new_tokens or min(model.max_new_tokens, limit)
        if max_new > limit:
            raise BadRequest(
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
        from tuneops.generation import generate

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
                    model.model, model.tokenizer, [jobs[i].prompt for i in idx], max_new_tokens=max_new,
                    batch_size=len(idx), add_special_tokens=special, decoding=decoding, token_counts=counts,
                )  # fmt: skip
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

    async def generate(self, req: GenerateRequest) -> dict:
        model = self.current
        if model is None:
            raise BadRequest(503, self.last_error or "no model loaded yet; retry shortly")
        prompt, special = self._prompt(req, model)
        if len(prompt) > self.config.max_prompt_chars:
            raise BadRequest(
                413,
                f"prompt is {len(prompt)} characters; the limit is {self.config.max_prompt_chars}: shorten it",
            )
        max_new, decoding = self._decoding(req, model)
        prompt_tokens = len(model.tokenizer(prompt, add_special_tokens=special)["input_ids"])
        if model.max_positions and prompt_tokens + max_new > model.max_positions:
            raise BadRequest(
                413,
                f"prompt is {prompt_tokens} tokens and max_new_tokens {max_new}; together they exceed the model's "
                f"context of {model.max_positions} tokens: shorten the prompt or ask for fewer tokens",
            )
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        mode = "prompt" if req.prompt is not None else "messages" if req.messages is not None else "inputs"
        common = {"request_id": request_id, "model": model.name, "version": model.version,
                  "variant": model.variant, "alias": self.config.alias, "mode": mode,
                  "prompt": prompt, "inputs": req.inputs, "prompt_tokens": prompt_tokens}  # fmt: skip
        try:
            result = await self.batcher.submit(model, (max_new, decoding.model_dump_json()), prompt, special)
        except Exception as exc:
            record = log_record(**common, response="", latency_s=time.monotonic() - started, error=str(exc))
            self._remember(record)
            raise
        latency = time.monotonic() - started
        record = log_record(
            **common,
            response=result["text"],
            latency_s=latency,
            completion_tokens=result["completion_tokens"],
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
            raise BadRequest(
                404, f"unknown request_id {req.request_id!r}: send the request_id that /generate returned"
            )
        if req.correction is not None:
            problem = correction_problem(req.correction, self.current.template if self.current else None)
            if problem:
                raise BadRequest(422, f"correction does not match the model's output format: {problem}")
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


def correction_problem(correction: str, template: PromptTemplate | None) -> str:
    """Why ``correction`` cannot be a training response for ``template`` ('' when it can).

    The same check as the gate's ``format_valid`` metric, so serving, monitoring and the gate agree.
    """
    if template is None or template.output is None:
        return ""
    from tuneops.metrics.json_format.json_format import check

    return check(correction, template.output.required_keys)


def _validation_message(errors: list[dict]) -> tuple[int, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "request body is not valid JSON: " + "; ".join(e.get("msg", "") for e in errors)
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return 422, "; ".join(parts)


def create_app(config: ServingConfig, settings: Settings | None = None):
    """The FastAPI app serving ``config.model_name@config.alias``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    service = Service(config, settings)

    @asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title=f"tuneops serving: {config.model_name}@{config.alias}", lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        status, message = _validation_message(exc.errors())
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.post("/generate")
    async def generate(req: GenerateRequest) -> dict:
        return await service.generate(req)

    @app.post("/feedback")
    async def feedback(req: FeedbackRequest) -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, service.feedback, req)

    @app.get("/health")
    async def health():
        body = service.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

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
