"""The in-process backend: llama-cpp-python with one long-lived context whose KV cache is reused."""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsp.model.backend import (
    FimTokens,
    Generation,
    GenerationStats,
    ModelError,
    ModelInfo,
    StopCheck,
    find_stop,
)
from lsp.model.draft import Draft, NgramDrafter, accepted_prefix

log = logging.getLogger(__name__)

_CONTROL_ATTRS = 1 << 3  # LLAMA_TOKEN_ATTR_CONTROL


def default_threads() -> int:
    """Physical cores are what matter for llama.cpp; `os.cpu_count()` counts SMT siblings too."""
    try:
        cores = set()
        for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
            core = cpu / "topology" / "core_id"
            package = cpu / "topology" / "physical_package_id"
            if core.exists():
                cores.add((package.read_text().strip(), core.read_text().strip()))
        if cores:
            return max(1, len(cores))
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def check_gguf(path: Path) -> None:
    """Refuse anything that is not a readable GGUF file before llama.cpp sees it."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF model file (bad magic {magic!r})")


@dataclass
class DecodeStats:
    """What the last `generate` did, for tests, benchmarks and the debug log."""

    steps: int = 0
    """Model evaluations while generating (one per token without speculation)."""
    batched_steps: int = 0
    """Evaluations that verified drafted tokens."""
    drafted: int = 0
    accepted: int = 0
    guarded: int = 0
    """Batched predictions too close to call, re-evaluated alone (see `Speculation.guard`)."""
    draft_ms: float = 0.0
    """Time the draft model spent proposing (speculative decoding only)."""
    tokens: list[int] = field(default_factory=list)
    """The generated token ids that were taken (the last one may have been cut by a stop)."""


class CostModel:
    """Seconds per evaluation by batch size: a measured curve, scaled by what this machine does.

    On a CPU a batch of n tokens costs far more than one token (2 cores, AVX-512: 1.6-2.3x for
    n = 2, 4.6-5.0x for n = 9, 6-6.3x for n = 17; llama.cpp's tiled kernels start at n = 8), so
    drafting pays only when long drafts are mostly accepted. `PRIOR` holds that curve; two
    numbers are learned from the evaluations themselves: the one-token time and how much this
    machine's batches deviate from the curve.
    """

    ALPHA = 0.2
    DEFAULT_ONE = 0.03
    PRIOR = ((1, 1.0), (2, 2.3), (3, 2.9), (5, 4.2), (9, 5.0), (17, 6.3))
    """(batch size, cost relative to one token), measured with bench/decoding.py's method on
    this project's 2-core machine, the larger of the 0.5B's and the 1.5B's ratio."""

    @classmethod
    def prior(cls, n: int) -> float:
        """The curve at `n`, linear between the measured points and beyond the last."""
        points = cls.PRIOR
        if n <= points[0][0]:
            return points[0][1]
        for (n0, r0), (n1, r1) in itertools.pairwise(points):
            if n <= n1:
                return r0 + (r1 - r0) * (n - n0) / (n1 - n0)
        (n0, r0), (n1, r1) = points[-2], points[-1]
        return r1 + (r1 - r0) * (n - n1) / (n1 - n0)

    def __init__(self) -> None:
        self.one: float | None = None
        self.scale = 1.0
        """Observed batch cost over the curve's prediction (EMA); above 1: batches cost more."""
        self.guard_rate = 0.3
        """Share of verifications that needed one more one-token evaluation (EMA)."""

    def observe(self, n: int, seconds: float) -> None:
        if n <= 1:
            self.one = seconds if self.one is None else self.one + self.ALPHA * (seconds - self.one)
            return
        ratio = seconds / (self.estimate(1) * self.prior(n))
        self.scale += self.ALPHA * (ratio - self.scale)

    def observe_guard(self, triggered: bool) -> None:
        self.guard_rate += self.ALPHA * (float(triggered) - self.guard_rate)

    def estimate(self, n: int) -> float:
        one = self.one if self.one is not None else self.DEFAULT_ONE
        return one if n <= 1 else one * self.prior(n) * self.scale


GUARD_MARGIN = 0.5
"""Logits. llama.cpp's CPU kernels for a batch (n >= 2) and for one token differ in rounding: on
538 rows of real FIM decoding the top-1/top-2 logit gap moved by at most 0.32 (p99 0.30) between
the two. A gap above this margin is decided the same either way; a closer one is re-evaluated."""

_BUCKETS = (1, 2, 3, 4, 6, 9, 16)
"""Backward match lengths (tokens) that start a confidence bucket."""
PRIOR_ACCEPTANCE = (0.0, 0.5, 0.7, 0.85, 0.93, 0.97, 0.98, 0.99)
"""Per bucket: the chance a drafted token is accepted after an accepted one, as measured on
HumanEval infilling with the 0.5B (drafts cut at newlines). Learning starts from here."""
PRIOR_WEIGHT = 8.0
"""Pseudo-observations behind each prior: a few real verifications move it."""


def _bucket(match: int) -> int:
    return sum(1 for b in _BUCKETS if match >= b)


@dataclass
class Speculation:
    """How `generate` guesses ahead. Guesses are verified: the output is greedy's either way."""

    lookup: bool = True
    """Prompt lookup: draft the tokens that followed an earlier occurrence of the last n-gram."""
    max_draft: int = 16
    """Most drafted tokens verified in one evaluation."""
    cut_at_newline: bool = True
    """Drafts end before a newline: a single-line completion stops there anyway."""
    adaptive: bool = True
    """Draft only when the expected tokens per second beat plain decoding (see `plan`);
    False verifies every draft found (for measurements)."""
    guard: float = GUARD_MARGIN
    """A batched prediction decides only if its best logit leads the next by this much."""
    draft_model: LlamaModel | None = None
    """Speculative decoding: a smaller model with the same vocabulary proposes the drafts."""
    draft_tokens: int = 4
    """Tokens the draft model proposes per step."""
    accepted: dict[int, float] = field(default_factory=dict)
    """Per bucket: drafted tokens accepted so far (learned over the session)."""
    rejected: dict[int, float] = field(default_factory=dict)
    """Per bucket: verifications that ended with a rejected token."""

    def acceptance(self, draft: Draft) -> float:
        """Estimated chance that the next drafted token is accepted, given the previous was."""
        b = _bucket(draft.match)
        prior = PRIOR_ACCEPTANCE[b]
        a = self.accepted.get(b, 0.0) + prior * PRIOR_WEIGHT
        r = self.rejected.get(b, 0.0) + (1 - prior) * PRIOR_WEIGHT
        return a / (a + r) if a + r > 0 else 0.0

    def plan(self, draft: Draft, costs: CostModel) -> int:
        """How many of the drafted tokens to verify (0: a plain step is expected to be faster)."""
        if not self.adaptive:
            return len(draft.tokens)
        a = self.acceptance(draft)
        one = costs.estimate(1)
        best_k, best_rate = 0, 1.0 / one
        expected = 1.0
        p = 1.0
        for k in range(1, len(draft.tokens) + 1):
            p *= a
            expected += p
            rate = expected / (costs.estimate(k + 1) + costs.guard_rate * one)
            if rate > best_rate:
                best_k, best_rate = k, rate
        return best_k

    def note(self, draft: Draft | None, drafted: int, accepted: int) -> None:
        """Learn from one verification (a truncated geometric: successes, then one failure)."""
        if draft is None or drafted <= 0:
            return
        b = _bucket(draft.match)
        self.accepted[b] = self.accepted.get(b, 0.0) + accepted
        if accepted < drafted:
            self.rejected[b] = self.rejected.get(b, 0.0) + 1


def _strict_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""  # never consistent with a prefix (see `LlamaModel.consistent_tokens`)


def best_token(logits: Any, allowed: Any = None) -> int:
    """The id of the largest logit, among the ids in `allowed` when it names any."""
    if allowed is None or not len(allowed):
        return int(np.argmax(logits))
    return int(allowed[int(np.argmax(logits[allowed]))])


class LlamaModel:
    """A `Model` (see backend.py) on llama-cpp-python. Call from one thread at a time."""

    def __init__(self, path: Path, *, name: str, n_ctx: int, n_threads: int) -> None:
        import llama_cpp

        check_gguf(path)
        threads = n_threads or default_threads()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {path} ({exc}); the file may be truncated or corrupt: "
                "run `hushcode model verify`"
            ) from exc
        self._lib = llama_cpp
        self.speculation = Speculation()
        """Prompt lookup is on; set `Speculation(lookup=False)` for plain greedy decoding."""
        self.costs = CostModel()
        self.last_decode = DecodeStats()
        self._last_draft: Draft | None = None
        self._owned_draft: LlamaModel | None = None
        self._vocab = self._llm._model.vocab
        self._piece_buf = ctypes.create_string_buffer(256)
        self._n_vocab = self._llm.n_vocab()
        self._stop_ids = self._collect_stop_ids()
        self._texts: list[str] | None = None
        """Every token's text (for `consistent_tokens`); read at load, not on a first request."""
        self._consistent_ids: dict[str, Any] = {}
        t0 = time.perf_counter()
        self.consistent_tokens(" ")
        log.debug("token texts read in %.0f ms", (time.perf_counter() - t0) * 1000)
        fim = FimTokens(
            prefix=llama_cpp.llama_vocab_fim_pre(self._vocab),
            suffix=llama_cpp.llama_vocab_fim_suf(self._vocab),
            middle=llama_cpp.llama_vocab_fim_mid(self._vocab),
            pad=llama_cpp.llama_vocab_fim_pad(self._vocab),
            repo=llama_cpp.llama_vocab_fim_rep(self._vocab),
            file_sep=llama_cpp.llama_vocab_fim_sep(self._vocab),
        )
        texts = {
            tid: self._piece(tid)
            for tid in (fim.prefix, fim.suffix, fim.middle, fim.pad, fim.repo, fim.file_sep)
            if tid >= 0
        }
        metadata: dict[str, str] = dict(self._llm.metadata)
        self.info = ModelInfo(
            name=name,
            path=str(path),
            size_bytes=path.stat().st_size,
            n_ctx=self._llm.n_ctx(),
            n_threads=threads,
            fim=fim,
            token_texts=texts,
            eog_texts=tuple(sorted({self._piece(t) for t in self._stop_ids} - {""})),
            chat_template=metadata.get("tokenizer.chat_template"),
            metadata=metadata,
        )

    def _piece_bytes(self, token: int, *, special: bool) -> bytes:
        """One token's bytes (llama-cpp-python's own helper pads them with NULs)."""
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def _piece(self, token: int) -> str:
        return self._piece_bytes(token, special=True).decode("utf-8", errors="replace")

    def _collect_stop_ids(self) -> frozenset[int]:
        """Every end-of-generation and control token: none of them belongs in inserted text."""
        lib = self._lib
        ids = set()
        for tid in range(self._n_vocab):
            if lib.llama_vocab_is_eog(self._vocab, tid) or (
                lib.llama_vocab_get_attr(self._vocab, tid) & _CONTROL_ATTRS
            ):
                ids.add(tid)
        return frozenset(ids)

    # -- the Model interface -------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        data = b"".join([self._piece_bytes(t, special=True) for t in tokens])
        return data.decode("utf-8", errors="replace")

    def _sync(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> tuple[int, int, bool]:
        """Make the KV cache hold exactly `tokens`; return (reused, evaluated, completed)."""
        llm = self._llm
        if len(tokens) >= llm.n_ctx():
            raise ModelError(f"prompt of {len(tokens)} tokens does not fit the context")
        limit = min(llm.n_tokens, len(tokens))
        if limit:
            differ = np.flatnonzero(
                llm.input_ids[:limit] != np.asarray(tokens[:limit], dtype=llm.input_ids.dtype)
            )
            n = int(differ[0]) if differ.size else limit
        else:
            n = 0
        if n == len(tokens):
            n -= 1  # the last token is evaluated again so its logits are current
        n = max(n, 0)
        self._truncate(n)
        evaluated = 0
        chunk = 64  # small chunks keep a cancel responsive during long prompt evaluation
        rest = list(tokens[n:])
        for i in range(0, len(rest), chunk):
            if cancel():
                return n, evaluated, False
            llm.eval(rest[i : i + chunk])
            evaluated += len(rest[i : i + chunk])
        return n, evaluated, True

    def _truncate(self, n: int) -> None:
        """Forget every cached position from `n` on (KV cache and llama-cpp-python's mirror)."""
        self._llm.n_tokens = n
        self._llm._ctx.kv_cache_seq_rm(-1, n, -1)

    def evaluate(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> GenerationStats:
        start = time.perf_counter()
        reused, evaluated, done = self._sync(tokens, cancel)
        draft = self.speculation.draft_model
        if done and draft is not None:
            done = draft._sync(tokens, cancel)[2]  # the draft model's cache is warm too
        return GenerationStats(
            prompt_tokens=len(tokens),
            reused_tokens=reused,
            evaluated_tokens=evaluated,
            eval_ms=(time.perf_counter() - start) * 1000,
            stop_reason="warmup" if done else "cancelled",
        )

    def _argmax(self, row: int = -1) -> int:
        ptr = self._lib.llama_get_logits_ith(self._llm._ctx.ctx, row)
        logits: Any = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,)
        )
        return int(np.argmax(logits))

    def _best_after(self, uncovered: str) -> int:
        """The greedy token after the cache; with `uncovered`, the best one consistent with it."""
        if not uncovered:
            return self._argmax()
        ptr = self._lib.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        logits: Any = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,)
        )
        return best_token(logits, self.consistent_tokens(uncovered))

    def consistent_tokens(self, text: str) -> Any:
        """Ids of the tokens that continue `text`: they start with it, or are a start of it."""
        hit = self._consistent_ids.get(text)
        if hit is None:
            if self._texts is None:
                # strict: a token ending in part of a UTF-8 character would be taken for its
                # first bytes alone, and the rest of that character lost
                self._texts = [
                    _strict_text(self._piece_bytes(t, special=False)) for t in range(self._n_vocab)
                ]
            ids = [
                t
                for t, s in enumerate(self._texts)
                if s and t not in self._stop_ids and (s.startswith(text) or text.startswith(s))
            ]
            hit = np.asarray(ids, dtype=np.int64)
            if len(self._consistent_ids) < 256:  # pads are few: indentation widths, one space
                self._consistent_ids[text] = hit
        return hit

    def _decode(self, batch: Sequence[int]) -> list[int]:
        """Evaluate `batch` after the cache; the greedy prediction after each of its tokens."""
        return self._decode_rows(batch, margins=False)[0]

    def _decode_rows(self, batch: Sequence[int], *, margins: bool) -> tuple[list[int], list[float]]:
        """As `_decode`, and with `margins` each row's lead of its best logit over the next."""
        llm = self._llm
        n_past = llm.n_tokens
        n = len(batch)
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llm._batch.set_batch(batch, n_past, logits_all=n > 1)
        llm._ctx.decode(llm._batch)
        llm.input_ids[n_past : n_past + n] = batch
        llm.n_tokens = n_past + n
        if n == 1 and not margins:
            return [self._argmax()], []
        preds: list[int] = []
        leads: list[float] = []
        for i in range(n):
            ptr = self._lib.llama_get_logits_ith(llm._ctx.ctx, i)
            row: Any = np.ctypeslib.as_array(
                ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,)
            )
            best = int(np.argmax(row))
            preds.append(best)
            if margins:
                top = float(row[best])
                row[best] = -np.inf  # llama.cpp's buffer: rewritten by the next decode
                leads.append(top - float(np.max(row)))
                row[best] = top
        return preds, leads

    def propose(self, context: Sequence[int], k: int) -> list[int]:
        """As a draft model: up to `k` greedy tokens after `context` (its cache is reused)."""
        self._sync(context, lambda: False)
        out: list[int] = []
        token = self._argmax()
        while len(out) < k and token not in self._stop_ids:
            out.append(token)
            if len(out) < k:
                token = self._decode([token])[0]
        return out

    def generate(
        self,
        tokens: Sequence[int],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        stop_check: StopCheck | None = None,
        cancel: Callable[[], bool] = lambda: False,
        deadline: float | None = None,
        prefix: str = "",
    ) -> Generation:
        """Greedy generation; with `speculation`, drafted tokens are verified in one batch.

        Every token is taken as plain greedy decoding takes it: cancel, deadline, max_tokens,
        control tokens, stop strings and `stop_check` are applied one token at a time, and the
        token that ends generation is never evaluated (the cache holds the prompt and the tokens
        before it, so the next request's prefix match is exact). Until the output covers
        `prefix`, each token is the best one consistent with it, one token per step.
        """
        start = time.perf_counter()
        reused, evaluated, done = self._sync(tokens, cancel)
        stats = GenerationStats(
            prompt_tokens=len(tokens), reused_tokens=reused, evaluated_tokens=evaluated
        )
        stats.eval_ms = (time.perf_counter() - start) * 1000
        decode = DecodeStats()
        self.last_decode = decode
        if not done:
            stats.stop_reason = "cancelled"
            return Generation("", stats)
        spec = self.speculation
        out = _Output(self, stop, stop_check)
        drafter = NgramDrafter(tokens) if spec.lookup or spec.draft_model is not None else None
        decode.tokens = out.tokens
        gen_start = time.perf_counter()
        llm = self._llm
        # `queue[i]` sits at cache position `base + i`, evaluated except for the last (pending).
        base = llm.n_tokens

        def uncovered() -> str:
            """What of `prefix` the output has not written yet."""
            return prefix[len(out.text) :] if len(out.text) < len(prefix) else ""

        queue = [self._best_after(uncovered())]
        reason: str | None = None
        while reason is None:
            for i, token in enumerate(queue):
                if stats.generated_tokens >= max_tokens:
                    reason = "limit"
                elif cancel():
                    reason = "cancelled"
                elif deadline is not None and time.monotonic() > deadline:
                    reason = "time"
                else:
                    reason = out.take(token)
                    if reason != "eos":
                        stats.generated_tokens += 1
                    if reason is None:
                        if drafter is not None:
                            drafter.extend((token,))
                        if stats.generated_tokens >= max_tokens:
                            reason = "limit"  # the last token need not be evaluated
                if reason is not None:
                    # The cache keeps the tokens before this one: what is known to be wanted.
                    self._truncate(min(base + i, llm.n_tokens))
                    break
            if reason is not None:
                break
            pending = queue[-1]
            healing = uncovered()
            room = max_tokens - stats.generated_tokens - 1
            drafts = [] if healing else self._drafts(drafter, out, room)
            t0 = time.perf_counter()
            guard = bool(drafts) and spec.guard > 0
            preds, margins = self._decode_rows([pending, *drafts], margins=guard)
            self.costs.observe(1 + len(drafts), time.perf_counter() - t0)
            accepted = accepted_prefix(drafts, preds)
            nxt = self._best_after(healing) if healing else preds[accepted]
            decode.steps += 1
            if drafts:
                decode.batched_steps += 1
                decode.drafted += len(drafts)
                spec.note(self._last_draft, len(drafts), accepted)
                close = [r for r in range(accepted + 1) if guard and margins[r] < spec.guard]
                self.costs.observe_guard(bool(close))
                if close:
                    # Too close to call with batch kernels (their logits differ slightly from a
                    # one-token evaluation's): that row's input is evaluated alone, as plain
                    # greedy decoding evaluates it, and its prediction decides.
                    accepted = close[0]
                    self._truncate(base + len(queue) - 1 + accepted)
                    t0 = time.perf_counter()
                    nxt = self._decode([pending if accepted == 0 else drafts[accepted - 1]])[0]
                    self.costs.observe(1, time.perf_counter() - t0)
                    decode.steps += 1
                    decode.guarded += 1
                else:
                    self._truncate(base + len(queue) + accepted)
                decode.accepted += accepted
            base += len(queue)
            queue = [*drafts[:accepted], nxt]
        stats.stop_reason = reason
        stats.generate_ms = (time.perf_counter() - gen_start) * 1000
        return Generation(out.text, stats)

    def _drafts(self, drafter: NgramDrafter | None, out: _Output, room: int) -> list[int]:
        """Tokens worth verifying with the next one, or none when a plain step is cheaper."""
        spec = self.speculation
        room = min(room, spec.max_draft, self._llm.n_ctx() - self._llm.n_tokens - 2)
        if drafter is None or room <= 0:
            return []
        self._last_draft = None
        if spec.draft_model is not None:
            t0 = time.perf_counter()
            guess = spec.draft_model.propose(drafter.tokens, min(room, spec.draft_tokens))
            self.last_decode.draft_ms += (time.perf_counter() - t0) * 1000
            return out.usable(guess, cut_at_newline=spec.cut_at_newline)
        found = drafter.draft(room)
        if not found.tokens:
            return []
        usable = out.usable(list(found.tokens), cut_at_newline=spec.cut_at_newline)
        if not usable:
            return []
        found = Draft(tuple(usable), found.ngram, found.match, found.source)
        self._last_draft = found
        return usable[: spec.plan(found, self.costs)]

    def attach_draft(self, draft: LlamaModel) -> None:
        """Speculative decoding: `draft` (same vocabulary) proposes, this model verifies.

        The draft model is owned from now on (closed with this one). It costs its own weights
        and KV cache in memory and its own prompt evaluation on every cold request.
        """
        step = max(1, self._n_vocab // 4096)
        same = draft._n_vocab == self._n_vocab and all(
            draft._piece_bytes(t, special=True) == self._piece_bytes(t, special=True)
            for t in range(0, self._n_vocab, step)
        )
        if not same:
            raise ModelError(
                f"{draft.info.name} cannot draft for {self.info.name}: their vocabularies differ "
                "(use a smaller model of the same family, or clear model.draft)"
            )
        self.speculation = Speculation(draft_model=draft)
        self._owned_draft = draft

    def close(self) -> None:
        owned = getattr(self, "_owned_draft", None)
        if owned is not None:
            owned.close()
        try:
            self._llm.close()
        except Exception:  # pragma: no cover - best effort at shutdown
            log.debug("closing the model failed", exc_info=True)


class _Output:
    """The text so far, built one token at a time exactly as plain greedy decoding builds it."""

    def __init__(self, model: LlamaModel, stop: Sequence[str], check: StopCheck | None) -> None:
        self._model = model
        self._stop = stop
        self._check = check
        self.raw = bytearray()
        self.text = ""
        self.tokens: list[int] = []

    def take(self, token: int) -> str | None:
        """Add one token; the stop reason if generation ends with it (then `text` is cut)."""
        if token in self._model._stop_ids:
            return "eos"
        self.tokens.append(token)
        self.raw += self._model._piece_bytes(token, special=False)
        text = self.text = self.raw.decode("utf-8", errors="ignore")
        cut = find_stop(text, self._stop)
        reason = "stop" if cut is not None else None
        if cut is None and self._check is not None:
            cut = self._check(text)
            if cut is not None:
                reason = "rule"
        if cut is not None:
            self.text = text[:cut]
        return reason

    def usable(self, guess: Sequence[int], *, cut_at_newline: bool) -> list[int]:
        """The drafts before the first one that ends generation for sure (a control token, a stop
        string) or, with `cut_at_newline`, that holds a newline. Verifying them would be wasted:
        the prediction after the last draft kept says whether that token comes. `stop_check` is
        not consulted (it may count calls); the drafts it would cut are verified, never shown."""
        raw = bytearray(self.raw)
        for i, token in enumerate(guess):
            if token in self._model._stop_ids:
                return list(guess[:i])
            piece = self._model._piece_bytes(token, special=False)
            if cut_at_newline and b"\n" in piece:
                return list(guess[:i])
            raw += piece
            if self._stop and find_stop(raw.decode("utf-8", "ignore"), self._stop) is not None:
                return list(guess[:i])
        return list(guess)
