"""The action engine: free listing, and resolve = prompt, sliced generation, reply → checked edit.

Scheduling (one model serves ghost text and actions; ghost text keeps priority):
an action generates in *slices* at `Priority.ACTION`. Between tokens the backend calls the
slice's cancel callback, which also answers True when `service.higher_priority_waiting(ACTION)`
says a completion is queued; the slice then returns early with what it has ("yield"). The
action coroutine resubmits the continuation (chat prompt + prefill + text so far) at ACTION
priority, so the waiting completion runs first and waited at most one token (or one 64-token
chunk of prompt evaluation). The price is a re-evaluation of the action prompt after each yield.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsp.actions import context as ctx
from lsp.actions import tree as T
from lsp.actions.languages import for_id
from lsp.actions.listing import list_offers, matches_only
from lsp.actions.model import (
    ActionCancelled,
    ActionEdit,
    ActionError,
    Diagnostic,
    Document,
    Offer,
    ReplyError,
    StaleDocument,
    Target,
)
from lsp.actions.plans import Env, FileReader, Plan, make_plan
from lsp.actions.prompts import ChatFormat, PromptBook, fill
from lsp.actions.reply import check_edit
from lsp.config import ActionSettings
from lsp.model.backend import Generation, Model, ModelError
from lsp.model.service import CancelToken, ModelService, Priority

log = logging.getLogger(__name__)

Progress = Callable[[str, int | None], None]
"""(message, percentage) for `$/progress`; called on the event loop's thread."""

CHARS_PER_TOKEN = 3.2
TREE_CACHE = 8


@dataclass
class ResolveRecord:
    kind: str
    outcome: str = ""
    """ok | failed | stale | cancelled"""
    total_ms: float = 0.0
    queue_ms: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    slices: int = 0
    yields: int = 0
    """Slices that stopped early because a completion was waiting."""
    retries: int = 0
    stop_reason: str = ""
    context_snippets: int = 0
    error: str = ""


@dataclass
class ActionMetrics:
    """Counters for `hushcode.actionMetrics`: tests read `model_calls` around a listing."""

    listings: int = 0
    offers: int = 0
    model_calls: int = 0
    """Jobs run on the model thread for actions (incremented there)."""
    listing_ms: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    resolves: deque[ResolveRecord] = field(default_factory=lambda: deque(maxlen=200))

    def snapshot(self) -> dict[str, Any]:
        by_kind: dict[str, dict[str, Any]] = {}
        for r in self.resolves:
            entry = by_kind.setdefault(r.kind, {"count": 0, "ok": 0, "ms": []})
            entry["count"] += 1
            entry["ok"] += r.outcome == "ok"
            entry["ms"].append(r.total_ms)
        for entry in by_kind.values():
            ms = entry.pop("ms")
            entry["p50_ms"] = statistics.median(ms)
            entry["last_ms"] = ms[-1]
        listing = sorted(self.listing_ms)
        return {
            "listings": self.listings,
            "offers": self.offers,
            "model_calls": self.model_calls,
            "listing_p50_ms": statistics.median(listing) if listing else 0.0,
            "listing_max_ms": listing[-1] if listing else 0.0,
            "listing_last_ms": self.listing_ms[-1] if self.listing_ms else 0.0,
            "resolves": len(self.resolves),
            "yields": sum(r.yields for r in self.resolves),
            "by_kind": by_kind,
            "recent": [asdict(r) for r in list(self.resolves)[-20:]],
        }


@dataclass
class _Output:
    text: str
    stop_reason: str


def read_disk(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


class ActionEngine:
    def __init__(
        self,
        service: ModelService,
        settings: Callable[[], ActionSettings],
        *,
        prompts: PromptBook | None = None,
        index: Callable[[], ctx.DefinitionSource | None] = lambda: None,
        read: FileReader = read_disk,
    ) -> None:
        self.service = service
        self.settings = settings
        self.prompts = prompts or PromptBook()
        self.index = index
        self.read = read
        self.chat = ChatFormat(self.prompts.chat_fallback)
        self.metrics = ActionMetrics()
        self._trees: OrderedDict[tuple[str, int | None, int, int], T.Parsed] = OrderedDict()

    # -- listing --------------------------------------------------------------------------------

    def parse(self, doc: Document) -> T.Parsed | None:
        """The document's tree, cached by version and text (listing runs on every cursor move)."""
        lang = for_id(doc.language)
        if lang is None:
            return None
        key = (doc.uri, doc.version, len(doc.text), hash(doc.text))
        parsed = self._trees.get(key)
        if parsed is None or parsed.lang is not lang:
            parsed = T.parse(lang, doc.text)
            if parsed is None:
                return None
            self._trees[key] = parsed
            while len(self._trees) > TREE_CACHE:
                self._trees.popitem(last=False)
        else:
            self._trees.move_to_end(key)
        return parsed

    def list_actions(
        self,
        doc: Document,
        start: int,
        end: int,
        diagnostics: Sequence[Diagnostic] = (),
        only: Sequence[str] | None = None,
    ) -> list[Offer]:
        """The actions that fit [start, end]; never calls the model."""
        began = time.perf_counter()
        offers: list[Offer] = []
        if self.settings().enabled:
            parsed = self.parse(doc)
            if parsed is not None:
                offers = [
                    o
                    for o in list_offers(doc, parsed, start, end, diagnostics, self.prompts)
                    if matches_only(o, only)
                ]
        self.metrics.listings += 1
        self.metrics.offers += len(offers)
        self.metrics.listing_ms.append((time.perf_counter() - began) * 1000)
        return offers

    def unavailable(self) -> str | None:
        """Why a listed action cannot run now (the model is loading or failed), else None."""
        if self.service.ready:
            return None
        return f"the model is {self.service.state.value}"

    # -- resolve --------------------------------------------------------------------------------

    async def resolve(
        self,
        doc: Document,
        target: Target,
        cancel: CancelToken,
        progress: Progress | None = None,
    ) -> ActionEdit:
        """Generate and check the edit; raises ActionError (StaleDocument, ActionCancelled)."""
        record = ResolveRecord(kind=target.kind.value)
        began = time.perf_counter()
        try:
            edit = await self._resolve(doc, target, cancel, progress, record)
            record.outcome = "ok"
            return edit
        except StaleDocument as exc:
            record.outcome, record.error = "stale", str(exc)
            raise
        except (ActionCancelled, asyncio.CancelledError):
            record.outcome = "cancelled"
            raise
        except ActionError as exc:
            record.outcome, record.error = "failed", str(exc)
            raise
        finally:
            record.total_ms = (time.perf_counter() - began) * 1000
            self.metrics.resolves.append(record)
            log.debug("action %s", asdict(record))

    async def _resolve(
        self,
        doc: Document,
        target: Target,
        cancel: CancelToken,
        progress: Progress | None,
        record: ResolveRecord,
    ) -> ActionEdit:
        if target.version != doc.version:
            raise StaleDocument(
                f"hushcode: {doc.rel} changed since this action was listed (version "
                f"{target.version}, now {doc.version}); nothing was changed: ask for code "
                "actions again"
            )
        parsed = self.parse(doc)
        if parsed is None:
            raise ActionError(f"hushcode: no grammar for {doc.language or doc.rel}")
        if not (0 <= target.start <= target.end <= len(doc.text)):
            raise StaleDocument("hushcode: the code this action was listed for is gone")
        settings = self.settings()
        prompt = self.prompts.get(target.kind, parsed.lang)
        plan = make_plan(Env(doc, parsed, target, prompt, self.prompts, self.read))
        values = dict(plan.values)
        snippets = await self._context(doc, parsed, plan, settings)
        record.context_snippets = len(snippets)
        if snippets:
            block = "".join(
                fill(self.prompts.text("snippet"), {**values, "path": p, "text": t})
                for p, t in snippets
            )
            values["context"] = fill(self.prompts.text("context"), {"snippets": block})
        title = fill(plan.title, values)
        messages = [
            {"role": "system", "content": fill(prompt.system, values)},
            {"role": "user", "content": fill(prompt.user, values)},
        ]
        prefill = fill(prompt.prefill, values)
        deadline = time.monotonic() + settings.time_budget_ms / 1000
        problem = ""
        for attempt in range(2):
            out = await self._generate(
                messages, prefill, plan, cancel, deadline, settings.max_tokens, progress, record
            )
            reply = prefill + out.text
            try:
                files = plan.build(reply, out.stop_reason in ("limit", "time"))
                for file in files:
                    check_edit(plan.languages.get(file.uri, parsed.lang), file)
                return ActionEdit(title, files)
            except ReplyError as exc:
                problem = str(exc)
                log.info("%s: reply %d not usable: %s", target.kind.value, attempt + 1, problem)
                log.debug("the reply was: %r", reply)
                if out.stop_reason == "time" or time.monotonic() >= deadline:
                    problem += (
                        f"; generation stopped at the time cap ({settings.time_budget_ms} ms, "
                        "setting actions.timeBudgetMs)"
                    )
                    break
                if attempt == 0:
                    record.retries += 1
                    retry = fill(self.prompts.text("retry"), {**values, "problem": problem})
                    messages = [
                        *messages,
                        {"role": "assistant", "content": reply},
                        {"role": "user", "content": retry},
                    ]
        label = title.removeprefix("hushcode: ")
        raise ActionError(
            f"hushcode: could not {label}: the model's reply was not usable ({problem}). "
            "Nothing was changed; try again, or select less code."
        )

    async def _context(
        self, doc: Document, parsed: T.Parsed, plan: Plan, settings: ActionSettings
    ) -> list[tuple[str, str]]:
        index = self.index()
        budget = int(settings.context_tokens * CHARS_PER_TOKEN)
        if index is None or budget <= 0:
            return []
        src = parsed.source
        start, end = plan.focus
        node = parsed.tree.root_node.descendant_for_byte_range(src.byte(start), src.byte(end))
        if node is None:
            return []
        names = T.identifiers(parsed, node)
        lines = (T.line_number(doc.text, start), T.line_number(doc.text, end))
        try:
            return await asyncio.to_thread(
                ctx.definitions_used, index, names, path=doc.rel, skip=lines, budget_chars=budget
            )
        except Exception:
            log.exception("repository context failed; the action goes on without it")
            return []

    async def _generate(
        self,
        messages: list[dict[str, str]],
        prefill: str,
        plan: Plan,
        cancel: CancelToken,
        deadline: float,
        max_tokens: int,
        progress: Progress | None,
        record: ResolveRecord,
    ) -> _Output:
        """Generate in slices that give way to completions (see the module docstring)."""
        text = ""
        while True:
            remaining = max_tokens - record.generated_tokens
            if remaining <= 0:
                return _Output(text, "limit")
            if cancel.cancelled:
                raise ActionCancelled("hushcode: the action was cancelled; nothing was changed")
            gen, yielded = await self._slice(
                messages, prefill + text, text, plan, cancel, deadline, remaining, progress,
                record, max_tokens,
            )  # fmt: skip
            record.slices += 1
            text += gen.text
            record.generated_tokens += gen.stats.generated_tokens
            record.stop_reason = gen.stats.stop_reason
            if gen.stats.stop_reason == "cancelled":
                if cancel.cancelled:
                    raise ActionCancelled("hushcode: the action was cancelled; nothing was changed")
                if yielded:
                    record.yields += 1
                    continue
            return _Output(text, gen.stats.stop_reason)

    async def _slice(
        self,
        messages: list[dict[str, str]],
        head: str,
        so_far: str,
        plan: Plan,
        cancel: CancelToken,
        deadline: float,
        remaining: int,
        progress: Progress | None,
        record: ResolveRecord,
        max_tokens: int,
    ) -> tuple[Generation, bool]:
        """One slice: generation after `head` (prefill + text so far) until done or yielding."""
        loop = asyncio.get_running_loop()
        yielded = False
        count = record.generated_tokens
        last_report = time.monotonic()
        queued = time.perf_counter()

        def should_stop() -> bool:
            nonlocal yielded
            if cancel.cancelled:
                return True
            if self.service.higher_priority_waiting(Priority.ACTION):
                yielded = True
                return True
            return False

        def stop_check(piece: str) -> int | None:
            nonlocal count, last_report
            count += 1
            now = time.monotonic()
            if progress is not None and now - last_report > 0.5:
                last_report = now
                pct = min(99, 100 * count // max(1, max_tokens))
                loop.call_soon_threadsafe(progress, f"{count} tokens", pct)
            cut = plan.stop(so_far + piece)
            return None if cut is None else max(0, cut - len(so_far))

        def job(model: Model) -> Generation:
            self.metrics.model_calls += 1
            if record.slices == 0:
                record.queue_ms = (time.perf_counter() - queued) * 1000
            tokens = model.tokenize(self.chat.render(model, messages) + head, special=True)
            room = model.info.n_ctx - len(tokens) - 8
            if room < 16:
                raise ActionError(
                    f"hushcode: the prompt ({len(tokens)} tokens) does not fit the model's "
                    "context: select less code, or raise model.contextSize"
                )
            record.prompt_tokens = max(record.prompt_tokens, len(tokens))
            return model.generate(
                tokens,
                max_tokens=min(remaining, room),
                stop_check=stop_check,
                cancel=should_stop,
                deadline=deadline,
            )

        try:
            gen = await self.service.run(Priority.ACTION, job, cancel)
        except ModelError as exc:
            raise ActionError(f"hushcode: {exc}") from exc
        return gen, yielded
