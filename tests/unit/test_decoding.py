"""Prompt lookup and batched verification, on a fake llama.cpp context (no model file).

The fake is a deterministic toy language whose next token depends on the last two tokens, so text
repeats and n-gram lookup finds real matches. It keeps its own KV cache (position -> token) and
computes every prediction from it, so a rejected draft left in the cache, or `n_tokens`/`input_ids`
out of step with the cache, changes the output or trips an assertion. Like llama.cpp on a CPU,
its batch evaluation may round differently from a one-token evaluation: at "close calls" the best
and second-best logits swap when n >= 2 (the guard must catch that).
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsp.model.draft import NO_DRAFT, NgramDrafter, accepted_prefix
from lsp.model.llama import CostModel, LlamaModel, Speculation

V = 48
EOS = 0
NEWLINE = 1
CLOSE_MARGIN = 0.2
PIECES = {EOS: b"", NEWLINE: b"\n", 2: b"    ", 3: b"(", 4: b")", 5: b", ", 6: b" = "}


def piece(token: int) -> bytes:
    return PIECES.get(token, f"w{token}".encode())


class FakeBatch:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.n_past = 0
        self.logits_all = False

    def set_batch(self, batch: Sequence[int], n_past: int, logits_all: bool) -> None:
        self.tokens, self.n_past, self.logits_all = list(batch), n_past, logits_all


class FakeCtx:
    def __init__(self, owner: FakeLlm) -> None:
        self.owner = owner
        self.ctx = object()

    def kv_cache_seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        assert seq == -1 and p1 == -1
        kv = self.owner.kv
        for pos in [p for p in kv if p >= p0]:
            del kv[pos]
        return True

    def decode(self, batch: FakeBatch) -> None:
        self.owner.decode(batch.tokens, batch.n_past, batch.logits_all)


class FakeLlm:
    """The slice of `llama_cpp.Llama` that LlamaModel uses, over a toy language."""

    def __init__(self, seed: int, *, n_ctx: int = 2048, close_rate: float = 0.15) -> None:
        rng = random.Random(seed)
        self.table = {(a, b): rng.randrange(2, V) for a in range(V) for b in range(V)}
        for key in rng.sample(sorted(self.table), V * V // 12):
            self.table[key] = rng.choice([EOS, NEWLINE])
        self.close = {key for key in self.table if rng.random() < close_rate}
        self.kv: dict[int, int] = {}
        self.n_tokens = 0
        self.input_ids = np.zeros(n_ctx, dtype=np.intc)
        self._n_ctx = n_ctx
        self._ctx = FakeCtx(self)
        self._batch = FakeBatch()
        self.rows = (ctypes.c_float * V * 64)()
        self.n_rows = 0
        self.decodes: list[int] = []
        """The batch size of every evaluation."""

    def n_ctx(self) -> int:
        return self._n_ctx

    def logits(self, seq: Sequence[int], batched: bool) -> list[float]:
        key = (seq[-2] if len(seq) > 1 else 0, seq[-1])
        best = self.table[key]
        second = (best + 1) % V
        row = [0.0] * V
        row[best] = 1.0 + (CLOSE_MARGIN if key in self.close else 3.0)
        row[second] = 1.0
        if batched and key in self.close:
            row[best], row[second] = row[second], row[best]  # the batch kernels round the other way
        return row

    def decode(self, tokens: list[int], n_past: int, logits_all: bool) -> None:
        assert sorted(self.kv) == list(range(n_past)), "the cache must hold exactly 0..n_past-1"
        assert [self.kv[p] for p in range(n_past)] == list(self.input_ids[:n_past])
        for i, tok in enumerate(tokens):
            self.kv[n_past + i] = tok
        self.decodes.append(len(tokens))
        seq = [self.kv[p] for p in range(n_past + len(tokens))]
        batched = len(tokens) > 1
        outputs = range(len(tokens)) if logits_all else [len(tokens) - 1]
        self.n_rows = 0
        for i in outputs:
            self.rows[self.n_rows][:] = self.logits(seq[: n_past + i + 1], batched)
            self.n_rows += 1

    def eval(self, tokens: Sequence[int]) -> None:
        self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
        self.decode(list(tokens), self.n_tokens, False)
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)

    def continuation(self, prompt: Sequence[int], n: int) -> list[int]:
        """Plain greedy in the toy language (one-token evaluations)."""
        seq = list(prompt)
        out = []
        for _ in range(n):
            row = self.logits(seq, False)
            tok = int(np.argmax(row))
            out.append(tok)
            seq.append(tok)
        return out


class FakeLib:
    def __init__(self, llm: FakeLlm) -> None:
        self.llm = llm

    def llama_get_logits_ith(self, ctx: Any, i: int) -> Any:
        row = self.llm.n_rows - 1 if i < 0 else i
        assert 0 <= row < self.llm.n_rows, "no logits for that row"
        return ctypes.cast(self.llm.rows[row], ctypes.POINTER(ctypes.c_float))


class ToyModel(LlamaModel):
    def __init__(self, seed: int = 0, **kw: Any) -> None:  # no llama.cpp, no file
        self._llm = FakeLlm(seed, **kw)
        self._lib = FakeLib(self._llm)
        self._n_vocab = V
        self._stop_ids = frozenset({EOS})
        self.speculation = Speculation()
        self.costs = CostModel()
        self._last_draft = None
        self._texts = None
        self._consistent_ids = {}
        from lsp.model.llama import DecodeStats

        self.last_decode = DecodeStats()

    def _piece_bytes(self, token: int, *, special: bool) -> bytes:
        return piece(token)

    @property
    def fake(self) -> FakeLlm:
        assert isinstance(self._llm, FakeLlm)
        return self._llm

    def cached(self) -> list[int]:
        return [int(t) for t in self._llm.input_ids[: self._llm.n_tokens]]


def always(**kw: Any) -> Speculation:
    """Verify every draft found (no cost model): the hardest case for bookkeeping."""
    return Speculation(adaptive=False, **kw)


def repetitive_prompt(rng: random.Random, n: int) -> list[int]:
    """Code-like: chunks that recur, so the toy language repeats itself."""
    chunks = [[rng.randrange(2, V) for _ in range(rng.randrange(2, 7))] for _ in range(6)]
    out: list[int] = []
    while len(out) < n:
        out += rng.choice(chunks)
    return out[:n]


def expected_cache(prompt: Sequence[int], result: tuple[str, str, int, list[int]]) -> list[int]:
    """The prompt and the taken tokens, but not one that ended generation (never evaluated)."""
    _, reason, _, taken = result
    if reason in ("stop", "rule", "limit") and taken:
        return [*prompt, *taken[:-1]]
    return [*prompt, *taken]


def run(
    model: ToyModel,
    spec: Speculation,
    prompt: Sequence[int],
    *,
    fresh: bool = True,
    **kw: Any,
) -> tuple[str, str, int, list[int]]:
    model.speculation = spec
    if fresh:
        model._truncate(0)
    gen = model.generate(prompt, **{"max_tokens": 40, **kw})
    return gen.text, gen.stats.stop_reason, gen.stats.generated_tokens, model.last_decode.tokens


# -- the drafter -------------------------------------------------------------------------------


def test_drafter_copies_what_followed_the_longest_ngram() -> None:
    d = NgramDrafter([1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 2, 3])
    # "2 3" occurs twice before the tail; with "9 2 3" vs "8 2 3" the 3-gram "8 2 3" is unseen,
    # so the 2-gram decides: the most recent occurrence (followed by 7 8) wins the tie.
    draft = d.draft(3)
    assert draft.ngram == 2
    assert draft.tokens == (7, 8, 2)
    d.extend([4])
    assert d.draft(2).tokens == (5, 9)  # "2 3 4" now matches the start: 3-gram first
    assert d.draft(2).ngram == 3


def test_drafter_prefers_the_occurrence_with_the_longer_backward_match() -> None:
    # The tail "5 6 1 2" matches "5 6 1 2" (old, followed by 7) better than "9 9 1 2" (recent).
    d = NgramDrafter([5, 6, 1, 2, 7, 0, 9, 9, 1, 2, 8, 0, 5, 6, 1, 2], max_ngram=2)
    draft = d.draft(1)
    assert draft.tokens == (7,)
    assert draft.match == 4


def test_drafter_never_drafts_from_the_tail_itself_and_handles_no_match() -> None:
    assert NgramDrafter([]).draft(4) is NO_DRAFT
    assert NgramDrafter([1, 2, 3]).draft(4) is NO_DRAFT  # nothing repeats
    assert NgramDrafter([1, 2, 3]).draft(0) is NO_DRAFT
    d = NgramDrafter([7, 7, 7])
    assert d.draft(5).tokens == (7,)  # "7 7" at 0..1 is followed by one 7; the tail has nothing


def test_drafter_built_incrementally_equals_built_at_once() -> None:
    rng = random.Random(3)
    seq = repetitive_prompt(rng, 300)
    a = NgramDrafter(seq)
    b = NgramDrafter(seq[:100])
    for t in seq[100:]:
        b.extend([t])
    assert a._index == b._index
    assert a.draft(8) == b.draft(8)


def test_drafter_rejects_bad_ngram_bounds() -> None:
    with pytest.raises(ValueError):
        NgramDrafter(min_ngram=0)
    with pytest.raises(ValueError):
        NgramDrafter(min_ngram=3, max_ngram=2)


def test_accepted_prefix() -> None:
    assert accepted_prefix([], [5]) == 0
    assert accepted_prefix([1, 2, 3], [1, 2, 3, 4]) == 3
    assert accepted_prefix([1, 2, 3], [1, 9, 3, 4]) == 1
    assert accepted_prefix([1, 2, 3], [0, 2, 3, 4]) == 0


# -- the cost model and the plan -----------------------------------------------------------------


def test_cost_model_learns_and_falls_back_to_the_prior() -> None:
    costs = CostModel()
    assert costs.estimate(1) == CostModel.DEFAULT_ONE
    costs.observe(1, 0.02)
    assert costs.estimate(1) == 0.02
    assert costs.estimate(5) == pytest.approx(0.02 * CostModel.prior(5))
    costs.observe(1, 0.04)
    assert 0.02 < costs.estimate(1) < 0.04


def test_plan_drafts_only_when_it_pays() -> None:
    costs = CostModel()
    costs.observe(1, 0.02)
    spec = Speculation()
    confident = NgramDrafter([4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4]).draft(8)
    assert confident.match >= 9
    for _ in range(50):
        spec.note(confident, 8, 8)  # always accepted: drafting pays
    assert spec.plan(confident, costs) == 8
    guess = NgramDrafter([1, 2, 9, 1]).draft(8)
    for _ in range(50):
        spec.note(guess, 2, 0)  # never accepted: a plain step is faster
    assert spec.plan(guess, costs) == 0
    assert Speculation(adaptive=False).plan(guess, costs) == len(guess.tokens)


# -- generation: identical to plain greedy, cache exact ----------------------------------------


def single_line(text: str) -> int | None:
    """The engine's single-line rule: stop at the newline once something is written."""
    nl = text.find("\n")
    return nl if nl >= 0 and (nl > 0 or text.strip()) else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_prompt=st.integers(1, 120),
    max_tokens=st.integers(0, 40),
    stops=st.sampled_from([(), ("w7",), ("(", "w12")]),
    rule=st.booleans(),
    max_draft=st.integers(1, 16),
)
def test_lookup_gives_exactly_plain_greedy_and_an_exact_cache(
    seed: int,
    n_prompt: int,
    max_tokens: int,
    stops: tuple[str, ...],
    rule: bool,
    max_draft: int,
) -> None:
    model = ToyModel(seed % 7)
    prompt = repetitive_prompt(random.Random(seed), n_prompt)
    check = single_line if rule else None
    kw: dict[str, Any] = dict(max_tokens=max_tokens, stop=stops, stop_check=check)
    plain = run(model, Speculation(lookup=False), prompt, **kw)
    assert set(model.fake.decodes) <= {1, len(prompt)} | set(range(1, 65))
    fast = run(model, always(max_draft=max_draft), prompt, **kw)
    assert fast == plain
    assert model.cached() == expected_cache(prompt, fast)
    assert sorted(model.fake.kv) == list(range(model._llm.n_tokens))
    adaptive = run(model, Speculation(), prompt, **kw)
    assert adaptive == plain


def test_lookup_takes_fewer_evaluations_on_repetitive_text() -> None:
    model = ToyModel(1, close_rate=0.0)
    prompt = repetitive_prompt(random.Random(5), 200)
    model.fake.decodes.clear()
    plain = run(model, Speculation(lookup=False), prompt, max_tokens=40)
    plain_steps = len(model.fake.decodes)
    model.fake.decodes.clear()
    fast = run(model, always(), prompt, max_tokens=40)
    assert fast == plain
    assert model.last_decode.accepted > 0
    assert model.last_decode.steps < plain[2]
    assert len(model.fake.decodes) < plain_steps


def test_the_guard_keeps_close_calls_to_one_token_evaluations() -> None:
    """Where batch rounding flips the argmax, the unguarded decoder drifts from plain greedy."""
    drifted = 0
    for seed in range(12):
        model = ToyModel(seed, close_rate=0.3)
        prompt = repetitive_prompt(random.Random(seed), 150)
        plain = run(model, Speculation(lookup=False), prompt, max_tokens=40)
        assert run(model, always(), prompt, max_tokens=40) == plain
        drifted += run(model, always(guard=0.0), prompt, max_tokens=40) != plain
    assert drifted > 0  # the fake does flip: the guard is what keeps the output identical


def test_next_request_reuses_the_cache_after_a_lookup_generation() -> None:
    model = ToyModel(2, close_rate=0.0)
    prompt = repetitive_prompt(random.Random(9), 150)
    model.speculation = always()
    model._truncate(0)
    first = model.generate(prompt, max_tokens=30)
    assert first.stats.reused_tokens == 0
    # The user typed one more token: the whole prompt is reused, only the new token is evaluated.
    again = model.generate([*prompt, 5], max_tokens=30)
    assert again.stats.reused_tokens == len(prompt)
    assert again.stats.evaluated_tokens == 1
    # The same prompt again: everything but the last token is reused (its logits are re-made).
    model.generate(prompt, max_tokens=30)
    third = model.generate(prompt, max_tokens=30)
    assert third.stats.reused_tokens == len(prompt) - 1


def test_no_drafted_token_past_the_stop_point_is_shown_or_checked() -> None:
    model = ToyModel(4, close_rate=0.0)
    prompt = repetitive_prompt(random.Random(2), 150)
    seen: list[str] = []

    def check(text: str) -> int | None:
        seen.append(text)
        return single_line(text)

    plain = run(model, Speculation(lookup=False), prompt, stop_check=check, max_tokens=40)
    plain_calls = list(seen)
    seen.clear()
    fast = run(model, always(cut_at_newline=False), prompt, stop_check=check, max_tokens=40)
    assert fast == plain
    assert seen == plain_calls  # one call per taken token, in order: no look-ahead
    if plain[1] == "rule":
        assert "\n" not in fast[0]


def test_drafts_stop_before_newlines_and_control_tokens() -> None:
    model = ToyModel(0)
    from lsp.model.llama import _Output

    out = _Output(model, ("w9",), None)
    assert out.usable([7, 8, NEWLINE, 7], cut_at_newline=True) == [7, 8]
    assert out.usable([7, 8, NEWLINE, 7], cut_at_newline=False) == [7, 8, NEWLINE, 7]
    assert out.usable([7, EOS, 8], cut_at_newline=True) == [7]
    assert out.usable([7, 9, 8], cut_at_newline=True) == [7]  # "w9" is a stop string


def counter(n: int) -> Callable[[], bool]:
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > n

    return cancel


@pytest.mark.parametrize("after", [0, 1, 3, 7, 20])
def test_cancel_between_tokens_behaves_as_plain(after: int) -> None:
    model = ToyModel(6, close_rate=0.0)
    prompt = repetitive_prompt(random.Random(4), 120)
    plain = run(model, Speculation(lookup=False), prompt, cancel=counter(after + 1))
    fast = run(model, always(), prompt, cancel=counter(after + 1))
    assert fast == plain
    cached = model.cached()
    if fast[2] == 0:  # cancelled while the prompt was evaluated: a prefix of it is cached
        assert cached == list(prompt[: len(cached)])
    else:
        assert cached == expected_cache(prompt, fast)


def test_a_past_deadline_stops_before_the_first_token() -> None:
    model = ToyModel(6)
    prompt = repetitive_prompt(random.Random(4), 60)
    for spec in (Speculation(lookup=False), always()):
        text, reason, n, _ = run(model, spec, prompt, deadline=0.0)
        assert (text, reason, n) == ("", "time", 0)


def test_max_tokens_zero_and_cancel_during_prompt() -> None:
    model = ToyModel(6)
    prompt = repetitive_prompt(random.Random(4), 60)
    assert run(model, always(), prompt, max_tokens=0)[:3] == ("", "limit", 0)
    model._truncate(0)
    gen = model.generate(prompt, max_tokens=5, cancel=lambda: True)
    assert gen.stats.stop_reason == "cancelled" and gen.text == ""


def test_plain_greedy_of_the_fake_matches_its_language() -> None:
    model = ToyModel(8, close_rate=0.0)
    prompt = repetitive_prompt(random.Random(8), 40)
    expected = model.fake.continuation(prompt, 12)
    if EOS in expected:
        expected = expected[: expected.index(EOS)]
    _, _, _, taken = run(model, Speculation(lookup=False), prompt, max_tokens=12)
    assert taken == expected


@pytest.mark.parametrize("prefix", ["    ", "  "])
def test_a_prefix_is_written_first_then_decoding_is_plain_greedy(prefix: str) -> None:
    """Token healing: the only token consistent with the typed blanks ("    ", token 2) comes
    first whatever the model prefers; after it, every mode decodes as plain greedy does."""
    model = ToyModel(5, close_rate=0.0)
    prompt = repetitive_prompt(random.Random(5), 30)
    cont = model.fake.continuation([*prompt, 2], 39)
    if EOS in cont:
        cont = cont[: cont.index(EOS)]
    assert model.fake.continuation(prompt, 1) != [2], "the prefix must change the first token"
    for spec in (Speculation(lookup=False), Speculation(), always()):
        text, reason, _, taken = run(model, spec, prompt, prefix=prefix)
        assert taken[0] == 2 and text.startswith("    "), (spec, taken)
        assert taken[1:] == cont[: len(taken) - 1]
        assert len(taken) == min(40, 1 + len(cont))
        assert model.cached() == expected_cache(prompt, (text, reason, 0, taken))


# -- model: "auto" ---------------------------------------------------------------------------


def _measured(warm_ms: float) -> Any:
    from lsp.model import autoselect

    result = autoselect.BenchResult(fingerprint=autoselect.fingerprint(), measured_at=1.0)
    result.models[autoselect.ACCURATE] = autoselect.ModelMeasurement(
        autoselect.ACCURATE, warm_p50_ms=warm_ms, requests=12
    )
    return result


def test_auto_picks_the_accurate_model_only_when_measured_within_budget() -> None:
    from lsp.model import autoselect as a

    both = [a.FAST, a.ACCURATE]
    budget = a.LATENCY_BUDGET_S * 1000
    assert a.choose(_measured(budget - 1), both)[0] == a.ACCURATE
    assert a.choose(_measured(budget), both)[0] == a.ACCURATE
    over, why = a.choose(_measured(budget + 1), both)
    assert over == a.FAST and "exceeds" in why
    assert a.choose(_measured(100), [a.FAST])[0] == a.FAST  # not installed
    missing, why = a.choose(None, both)
    assert missing == a.FAST and "hushcode model bench" in why


def test_the_cached_measurement_is_dropped_when_the_hardware_changes(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsp.model import autoselect as a

    monkeypatch.setenv("HUSHCODE_HOME", str(tmp_path))
    assert a.load_result() is None
    a.save_result(_measured(300))
    loaded = a.load_result()
    assert loaded is not None and loaded.models[a.ACCURATE].warm_p50_ms == 300
    monkeypatch.setattr(a, "installed_models", lambda: [a.FAST, a.ACCURATE])
    assert a.resolve_auto() == a.ACCURATE
    real = a.fingerprint()
    monkeypatch.setattr(a, "fingerprint", lambda: {**real, "cores": real["cores"] + 6})
    assert a.load_result() is None  # another machine: measure again
    assert a.resolve_auto() == a.FAST
    a.cache_path().write_text("{not json")
    assert a.load_result() is None


def test_the_bench_prompt_set_is_fixed_and_single_line() -> None:
    from lsp.model import autoselect as a

    cases = a.bench_cases()
    assert len(cases) >= 5
    assert cases == a.bench_cases()
    for case in cases:
        assert case.text[case.offset - len("return ") : case.offset] == "return "
        assert case.rest and "\n" not in case.rest
        assert case.text[case.offset : case.offset + 1] in ("\n", "")


def test_fingerprint_names_the_hardware() -> None:
    from lsp.model import autoselect as a

    fp = a.fingerprint()
    assert {"cpu", "cores", "ram_gib", "llama_cpp"} <= set(fp)
    assert fp == a.fingerprint()
    assert a.percentile([1, 2, 3, 4], 0.5) == 2.5 and a.percentile([], 0.9) == 0.0
