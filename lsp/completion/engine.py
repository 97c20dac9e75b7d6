"""The completion engine: debounce, cache, prompt layout, generation on the model thread, rules."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lsp.completion import rules
from lsp.completion.cache import CompletionCache
from lsp.completion.fim import FimTemplate, select_template
from lsp.completion.layout import split
from lsp.config import CompletionSettings
from lsp.model.backend import Generation, Model, ModelError, ModelInfo
from lsp.model.service import CancelToken, ModelService, Priority

log = logging.getLogger(__name__)

ContextProvider = Callable[["CompletionRequest"], list[tuple[str, str]]]
"""Snippets (path, text) of other files for the context block; runs on a worker thread."""


@dataclass(frozen=True)
class CompletionRequest:
    uri: str
    text: str
    offset: int
    language_id: str | None
    path: str
    """The file's path relative to the workspace (as shown to the model)."""
    version: int | None = None


@dataclass
class RequestMetrics:
    source: str = "model"
    """model | cache | empty | cancelled | superseded | unavailable"""
    multiline: bool = False
    debounce_ms: float = 0.0
    queue_ms: float = 0.0
    build_ms: float = 0.0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    eval_ms: float = 0.0
    generate_ms: float = 0.0
    total_ms: float = 0.0
    stop_reason: str = ""
    context_files: int = 0


@dataclass
class CompletionResult:
    text: str
    metrics: RequestMetrics


@dataclass
class Metrics:
    """The last requests' numbers, for the debug log, `hushcode.metrics` and the benchmarks."""

    recent: deque[RequestMetrics] = field(default_factory=lambda: deque(maxlen=500))
    abandoned: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    """Generations whose request was cancelled: how far the worker got before it stopped."""
    warmups: int = 0
    warmup_tokens: int = 0

    def record(self, m: RequestMetrics) -> None:
        self.recent.append(m)
        log.debug("completion %s", asdict(m))

    def snapshot(self) -> dict[str, Any]:
        served = [m for m in self.recent if m.source in ("model", "cache")]
        totals = sorted(m.total_ms for m in served)

        def pct(q: float) -> float:
            if not totals:
                return 0.0
            return totals[min(len(totals) - 1, int(q * len(totals)))]

        return {
            "requests": len(self.recent),
            "served": len(served),
            "p50_ms": statistics.median(totals) if totals else 0.0,
            "p90_ms": pct(0.9),
            "warmups": self.warmups,
            "warmup_tokens": self.warmup_tokens,
            "last": asdict(self.recent[-1]) if self.recent else None,
            "abandoned": list(self.abandoned),
            "recent": [asdict(m) for m in list(self.recent)[-50:]],
        }


class CompletionEngine:
    def __init__(
        self,
        service: ModelService,
        templates: list[FimTemplate],
        settings: CompletionSettings,
        *,
        context: ContextProvider | None = None,
        repo_name: str = "",
    ) -> None:
        self.service = service
        self.templates = templates
        self.settings = settings
        self.context = context
        self.repo_name = repo_name
        self.template: FimTemplate | None = None
        self.cache = CompletionCache()
        self.metrics = Metrics()
        self._inflight: dict[str, CancelToken] = {}
        self._last_seen: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self._warmup_task: asyncio.Task[None] | None = None
        self._context_cache: dict[str, tuple[int, list[tuple[str, str]]]] = {}

    def model_ready(self, info: ModelInfo) -> str | None:
        """Choose the FIM template for a newly loaded model; returns a warning for the user."""
        self.template, warning = select_template(info, self.templates)
        self.cache.clear()
        return warning

    # -- requests -------------------------------------------------------------------------------

    def debounce_seconds(self, uri: str) -> float:
        """Adaptive: near the typist's own rhythm, within the configured bounds."""
        lo = self.settings.debounce_min_ms / 1000
        hi = self.settings.debounce_max_ms / 1000
        interval = self._interval.get(uri)
        if interval is None or interval > 1.0:
            return lo
        return min(hi, max(lo, 0.8 * interval))

    def _note_keystroke(self, uri: str) -> None:
        now = time.monotonic()
        last = self._last_seen.get(uri)
        self._last_seen[uri] = now
        if last is not None:
            gap = now - last
            prev = self._interval.get(uri, gap)
            self._interval[uri] = 0.7 * prev + 0.3 * gap

    async def complete(
        self, req: CompletionRequest, cancel: CancelToken
    ) -> CompletionResult | None:
        start = time.perf_counter()
        metrics = RequestMetrics()
        self._note_keystroke(req.uri)
        previous = self._inflight.get(req.uri)
        if previous is not None:
            previous.cancel()  # superseded: it answers empty at its next check
        self._inflight[req.uri] = cancel
        if self._warmup_task is not None:
            self._warmup_task.cancel()
        try:
            return await self._complete(req, cancel, metrics, start)
        finally:
            if self._inflight.get(req.uri) is cancel:
                del self._inflight[req.uri]
            metrics.total_ms = (time.perf_counter() - start) * 1000
            self.metrics.record(metrics)

    async def _complete(
        self, req: CompletionRequest, cancel: CancelToken, metrics: RequestMetrics, start: float
    ) -> CompletionResult | None:
        cached = self.cache.lookup(req.uri, req.text, req.offset)
        if cached is not None:
            metrics.source = "cache"
            return CompletionResult(cached, metrics)
        if not self.service.ready or self.template is None:
            metrics.source = "unavailable"
            return None
        delay = self.debounce_seconds(req.uri)
        metrics.debounce_ms = delay * 1000
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                metrics.source = "cancelled"
                raise
        if cancel.cancelled:
            metrics.source = "superseded"
            return None

        template = self.template
        built = await self._build(req, template)
        plan, prompt = built.plan, built.prompt
        metrics.multiline = plan.multiline
        metrics.context_files = built.context_files
        metrics.build_ms = (time.perf_counter() - start) * 1000 - metrics.debounce_ms
        max_tokens = self.settings.max_block_tokens if plan.multiline else self.settings.max_tokens
        budget = self.settings.time_budget_ms / 1000
        clock: dict[str, float] = {}
        queued = time.perf_counter()

        def stop_check(raw: str) -> int | None:
            """The stop rules, and the time budget. The budget counts from the first generated
            token: waiting for the model or evaluating the prompt is not runaway output."""
            now = time.monotonic()
            first = clock.setdefault("first", now)
            if now - first > budget:
                clock["timed_out"] = 1.0
                return len(raw)
            return built.stop_check(raw)

        def job(model: Model) -> tuple[Generation, float]:
            began = time.perf_counter()
            tokens = model.tokenize(prompt, special=True)
            limit = model.info.n_ctx - max_tokens - 8
            if len(tokens) > limit:
                tokens = tokens[-limit:]
            gen = model.generate(
                tokens,
                max_tokens=max_tokens,
                stop=template.stop,
                stop_check=stop_check,
                cancel=cancel,
                prefix=built.pad,  # the typed indentation or space: the output starts with it
            )
            if cancel.cancelled:
                self.metrics.abandoned.append(asdict(gen.stats))
            return gen, (began - queued) * 1000

        try:
            gen, queue_ms = await self.service.run(Priority.COMPLETION, job, cancel)
        except asyncio.CancelledError:
            metrics.source = "cancelled"  # the worker stops at its next token check
            raise
        except ModelError as exc:
            log.warning("completion failed: %s", exc)
            metrics.source = "unavailable"
            return None
        s = gen.stats
        metrics.queue_ms = queue_ms
        metrics.prompt_tokens, metrics.reused_tokens = s.prompt_tokens, s.reused_tokens
        metrics.evaluated_tokens, metrics.generated_tokens = s.evaluated_tokens, s.generated_tokens
        metrics.eval_ms, metrics.generate_ms, metrics.stop_reason = (
            s.eval_ms,
            s.generate_ms,
            s.stop_reason,
        )
        if s.stop_reason == "cancelled" or cancel.cancelled:
            metrics.source = "cancelled"
            return None
        timed_out = "timed_out" in clock
        if timed_out:
            metrics.stop_reason = "time"
        text = rules.finish(
            _drop_pad(gen.text, built.pad),
            plan,
            complete=s.stop_reason in ("eos", "stop", "rule") and not timed_out,
            first_line_indent=built.first_indent(gen.text),
        )
        text = rules.parse_guard(req.language_id, req.text, req.offset, text, plan)
        if not text:
            metrics.source = "empty"
            return None
        self.cache.store(req.uri, req.text, req.offset, text)
        return CompletionResult(text, metrics)

    async def _build(self, req: CompletionRequest, template: FimTemplate) -> _Built:
        layout = split(
            req.text,
            req.offset,
            budget_tokens=max(64, self.settings.max_prompt_tokens - self._context_budget()),
            prefix_ratio=self.settings.prefix_ratio,
        )
        plan = rules.plan(
            prefix=layout.prefix,
            middle=layout.middle,
            suffix=layout.suffix,
            language_id=req.language_id,
            text=req.text,
            offset=req.offset,
        )
        if not template.sees_suffix and plan.multiline:
            plan = replace(plan, multiline=False)
        # A typed trailing space stays out of the prompt: tokenizers glue spaces to the next word,
        # so `return ` would otherwise tempt the model into `return  fib`. Typing the space then
        # changes nothing in the prompt, and the KV cache is reused in full.
        # Likewise the indentation of a blank line: the model writes it itself, then it is dropped.
        middle = layout.middle.rstrip(" \t")
        pad = layout.middle[len(middle) :]
        context, n_files = await self._context_block(req, layout.cursor_line, template)
        prompt = template.render(
            context=context, prefix=layout.prefix, suffix=layout.suffix, middle=middle
        )
        return _Built(prompt, plan, pad, n_files, blank_line=not middle.strip())

    # -- context ----------------------------------------------------------------------------------

    def _context_budget(self) -> int:
        return self.settings.context_tokens if self.context is not None else 0

    async def _context_block(
        self, req: CompletionRequest, line: int, template: FimTemplate
    ) -> tuple[str, int]:
        """Repository context, recomputed when the cursor changes line, in a stable order."""
        files: list[tuple[str, str]] = []
        if self.context is not None and template.context_file:
            cached = self._context_cache.get(req.uri)
            if cached is not None and cached[0] == line:
                files = cached[1]
            else:
                try:
                    fresh = await asyncio.to_thread(self.context, req)
                except Exception:
                    log.exception("retrieval failed; completing without repository context")
                    fresh = []
                files = _stable_order(cached[1] if cached else [], fresh)
                self._context_cache[req.uri] = (line, files)
        return template.render_context(self.repo_name, files, req.path), len(files)

    # -- warm-up ----------------------------------------------------------------------------------

    def schedule_warmup(self, req: CompletionRequest, delay: float = 0.3) -> None:
        """When the cursor rests, evaluate the prompt (no generation): the next request is warm."""
        if not self.settings.warmup or not self.service.ready or self.template is None:
            return
        if self._warmup_task is not None:
            self._warmup_task.cancel()
        self._warmup_task = asyncio.get_running_loop().create_task(self._warmup(req, delay))

    async def _warmup(self, req: CompletionRequest, delay: float) -> None:
        await asyncio.sleep(delay)
        template = self.template
        if template is None or self._inflight:
            return
        prompt = (await self._build(req, template)).prompt
        cancel = CancelToken()

        def job(model: Model) -> int:
            tokens = model.tokenize(prompt, special=True)
            limit = model.info.n_ctx - self.settings.max_block_tokens - 8
            stats = model.evaluate(tokens[-limit:], cancel)
            return stats.evaluated_tokens

        try:
            evaluated = await self.service.run(Priority.WARMUP, job, cancel)
        except (ModelError, asyncio.CancelledError):
            cancel.cancel()
            return
        self.metrics.warmups += 1
        self.metrics.warmup_tokens += evaluated

    def forget(self, uri: str) -> None:
        self.cache.clear(uri)
        self._context_cache.pop(uri, None)
        self._interval.pop(uri, None)
        self._last_seen.pop(uri, None)


@dataclass(frozen=True)
class _Built:
    prompt: str
    plan: rules.Plan
    pad: str
    context_files: int
    blank_line: bool = False
    """The cursor's line holds only blanks before it (the pad is then its indentation)."""

    def first_indent(self, raw: str) -> int | None:
        """The indentation the model gave a blank line's first line (None: it continues a line,
        such as the space typed after `if x:`, which is not an indentation)."""
        return _first_indent(raw, self.pad) if self.blank_line else None

    def stop_check(self, raw: str) -> int | None:
        """The stop rules see the text as it will be inserted; the cut is mapped back to `raw`."""
        text = _drop_pad(raw, self.pad)
        cut = rules.stop_at(text, self.plan, first_line_indent=self.first_indent(raw))
        return None if cut is None else cut + len(raw) - len(text)


def _first_indent(raw: str, pad: str) -> int | None:
    if not pad or ("\n" not in raw and not raw.strip()):
        return None
    first = raw.split("\n", 1)[0]
    return rules.indent_width(first) if first.strip() else None


def _drop_pad(text: str, pad: str) -> str:
    """Remove the whitespace the user already typed from the start of the generated text."""
    n = 0
    while n < len(pad) and n < len(text) and text[n] in " \t":
        n += 1
    return text[n:]


def _stable_order(
    previous: list[tuple[str, str]], fresh: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Snippets seen before keep their place, new ones go last: the prompt head stays cached."""
    fresh_set = set(fresh)
    kept = [s for s in previous if s in fresh_set]
    kept_set = set(kept)
    return kept + [s for s in fresh if s not in kept_set]
