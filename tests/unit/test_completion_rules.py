"""Post-processing and stop rules, each on its own (pure functions), then through the engine."""

from __future__ import annotations

import asyncio

import pytest

from lsp.completion import rules
from lsp.completion.engine import CompletionEngine, CompletionRequest
from lsp.completion.fim import load_templates
from lsp.completion.layout import ANCHOR_LINES, split
from lsp.config import CompletionSettings
from lsp.model.service import CancelToken, ModelService
from tests.unit.fake_model import FakeModel


def plan_at(
    text: str, marker: str = "|", language: str | None = "python"
) -> tuple[rules.Plan, str, int]:
    offset = text.index(marker)
    text = text.replace(marker, "", 1)
    layout = split(text, offset, budget_tokens=1500, prefix_ratio=0.75)
    p = rules.plan(
        prefix=layout.prefix,
        middle=layout.middle,
        suffix=layout.suffix,
        language_id=language,
        text=text,
        offset=offset,
    )
    return p, text, offset


# -- single line vs multi-line --------------------------------------------------------------------


def test_mid_expression_is_single_line():
    p, _, _ = plan_at("def f(n):\n    return |\n")
    assert not p.multiline


def test_empty_block_body_is_multi_line():
    p, _, _ = plan_at("def f(n):\n    |\n")
    assert p.multiline
    assert p.block_indent == 4


def test_after_a_block_opener_on_the_cursor_line_is_multi_line():
    p, _, _ = plan_at("for x in xs:|\n")
    assert p.multiline
    assert p.block_indent == 1  # anything indented deeper than the opener


def test_inside_a_string_is_single_line():
    p, _, _ = plan_at('def f():\n    s = """doc |\n    """\n')
    assert not p.multiline


def test_blank_line_between_statements_is_single_line():
    p, _, _ = plan_at("def f():\n    a = 1\n    |\n    return a\n")
    assert not p.multiline


# -- stop rules during generation -----------------------------------------------------------------


def test_single_line_stops_at_the_newline():
    p, _, _ = plan_at("x = |\n")
    assert rules.stop_at("compute(1)\nprint(x)", p) == len("compute(1)")
    assert rules.stop_at("compute(1)", p) is None


def test_multi_line_stops_at_a_dedent_below_the_block():
    p, _, _ = plan_at("def f(n):\n    |\n")
    text = "total = n * 2\n    return total\ndef g():\n"
    assert rules.stop_at(text, p) == len("total = n * 2\n    return total")


def test_a_dedent_is_seen_at_the_first_visible_character_of_a_line():
    """No token is spent on the rest of a line that is thrown away."""
    p, _, _ = plan_at("def f(n):\n    |\n")
    body = "total = n * 2\n    return total"
    assert rules.stop_at(body + "\nd", p) == len(body)
    assert rules.stop_at(body + "\n  ", p) is None  # indentation still growing: not yet
    assert rules.stop_at(body + "\n    x", p) is None  # in the block
    # a repeat of the next line is judged only once the line is complete
    q, _, _ = plan_at("def f(n):\n    |\n    return total\n")
    assert rules.stop_at("total = n * 2\n    return tot", q) is None
    assert rules.stop_at("total = n * 2\n    return total\n", q) == len("total = n * 2")


def test_a_first_line_of_nothing_but_blanks_ends_empty():
    """Seen when the typed indentation is not where the model wanted to write."""
    p, _, _ = plan_at("def f(n):\n    |\n")
    assert rules.stop_at(" " * 8, p) is None  # more indentation may still lead to code
    assert rules.stop_at(" " * (p.nearby_indent + rules.RUNAWAY_BLANKS - 1), p) is None
    assert rules.stop_at(" " * (p.nearby_indent + rules.RUNAWAY_BLANKS), p) == 0
    q, _, _ = plan_at("x = |\n")
    assert rules.stop_at("\t" * rules.RUNAWAY_BLANKS, q) == 0


def test_multi_line_stops_where_it_repeats_the_suffix():
    p, _, _ = plan_at("def f(n):\n    |\n    return total\n")
    text = "total = n * 2\n    return total\n"
    assert rules.stop_at(text, p) == len("total = n * 2")


def test_a_first_line_that_leaves_the_block_ends_at_once():
    p, _, _ = plan_at("def f(n):\n    |\n")
    assert rules.stop_at("print(f(3))", p, first_line_indent=0) == 0


# -- final clean-up ------------------------------------------------------------------------------


def test_overlap_with_the_rest_of_the_line_is_dropped():
    p, _, _ = plan_at("print(|)\n")
    assert rules.finish("total(xs))", p, complete=True) == "total(xs)"


def test_trailing_whitespace_and_empty_results_are_dropped():
    p, _, _ = plan_at("x = |\n")
    assert rules.finish("compute(1)   ", p, complete=True) == "compute(1)"
    assert rules.finish("   ", p, complete=True) == ""


def test_a_line_cut_in_half_by_the_limit_is_dropped_in_multi_line_mode():
    p, _, _ = plan_at("def f(n):\n    |\n")
    assert rules.finish("a = 1\n    b = fo", p, complete=False) == "a = 1"


def test_parse_guard_trims_a_completion_that_breaks_the_parse():
    p, text, offset = plan_at("def f(xs):\n    return sum(|)\n")
    assert rules.parse_guard("python", text, offset, "xs)) + (", p) in ("xs", "xs)")
    good = rules.parse_guard("python", text, offset, "xs", p)
    assert good == "xs"


def test_parse_guard_keeps_a_completion_that_fixes_the_parse():
    p, text, offset = plan_at("def f(n):\n    return fib(|\n")
    assert rules.parse_guard("python", text, offset, "n - 1)", p) == "n - 1)"


# -- layout ----------------------------------------------------------------------------------------


def test_layout_puts_the_cursor_line_last_and_snaps_the_prefix_start():
    lines = [f"x{i} = {i}" for i in range(400)]
    text = "\n".join(lines) + "\n"
    offset = text.index("x300 = 300") + len("x300 = ")
    a = split(text, offset, budget_tokens=600, prefix_ratio=0.75)
    assert a.middle == "x300 = "
    assert a.prefix.endswith("x299 = 299\n")
    assert a.suffix.startswith("300\nx301")
    assert a.prefix_start_line % ANCHOR_LINES == 0
    # one line further down, the prompt starts on the same line: its head stays in the KV cache
    b = split(text, text.index("x301 = 301") + 7, budget_tokens=600, prefix_ratio=0.75)
    assert b.prefix_start_line == a.prefix_start_line


# -- through the engine, with a scripted model -----------------------------------------------------


def run(coro):  # small helper: these tests need a loop for the model service
    return asyncio.run(coro)


async def _complete(text: str, reply: str, **settings) -> tuple[str | None, FakeModel]:
    offset = text.index("|")
    text = text.replace("|", "", 1)
    service = ModelService()
    model = FakeModel(reply)
    await service.load(lambda: model)
    engine = CompletionEngine(
        service, load_templates(), CompletionSettings(debounce_min_ms=0, **settings)
    )
    engine.model_ready(model.info)
    try:
        result = await engine.complete(
            CompletionRequest("file:///t.py", text, offset, "python", "t.py"), CancelToken()
        )
    finally:
        service.close()
    return (result.text if result else None), model


def test_engine_stops_generating_at_the_newline():
    text, model = run(_complete("def f(n):\n    return |\n", " n + 1\n\ndef g():\n    pass\n"))
    assert text == "n + 1"
    assert model.generated == len(" n + 1\n")  # nothing generated past the end of the answer


def test_engine_prompt_is_cache_friendly():
    _, model = run(_complete("a = 1\nb = |\nc = 3\n", "2"))
    prompt = model.prompts[-1]
    assert prompt.endswith("<|fim_middle|>b =")  # the typed space stays out of the prompt
    assert "<|fim_suffix|>\nc = 3\n" in prompt


def test_engine_never_shows_control_tokens():
    text, _ = run(_complete("x = |\n", "compute()<|file_sep|>other.py"))
    assert text == "compute()"


def test_engine_drops_a_completion_that_only_repeats_the_suffix():
    text, _ = run(_complete("print(|)\n", ")"))
    assert text is None


@pytest.mark.parametrize("reply", ["", "   ", "\n\n"])
def test_engine_returns_nothing_for_empty_output(reply):
    text, _ = run(_complete("x = |\n", reply))
    assert text is None


def test_debounce_follows_the_typists_rhythm_within_bounds():
    engine = CompletionEngine(
        ModelService(),
        load_templates(),
        CompletionSettings(debounce_min_ms=20, debounce_max_ms=200),
    )
    assert engine.debounce_seconds("u") == 0.02  # nothing known yet: the shortest
    engine._interval["u"] = 0.1  # a keystroke every 100 ms
    assert 0.02 < engine.debounce_seconds("u") < 0.2
    engine._interval["u"] = 0.5
    assert engine.debounce_seconds("u") == 0.2  # capped
    engine._interval["u"] = 3.0  # a pause, not typing
    assert engine.debounce_seconds("u") == 0.02
    engine.service.close()


def test_the_time_budget_stops_a_runaway_generation_after_its_first_token():
    text, model = run(_complete("x = |\n", "compute(1, 2, 3, 4, 5, 6, 7, 8, 9)", time_budget_ms=0))
    assert model.generated <= 2
    assert text in (None, "c", "co")


def test_engine_keeps_code_after_the_space_typed_behind_a_block_opener():
    """The typed space after `if x:` is no indentation: ` return x` continues that line."""
    text, _ = run(_complete("def f(x):\n    if x: |\n", " return x\n"))
    assert text == "return x"


def test_deep_code_on_a_blank_line_is_not_taken_for_runaway_blanks():
    deep = " " * 20
    p, _, _ = plan_at(f"def f():\n{deep}x = 1\n|\n{deep}y = 2\n")
    assert p.nearby_indent == 20
    assert rules.stop_at(deep[:-1], p) is None  # the model writes the indentation itself
    assert rules.stop_at(deep + " " * rules.RUNAWAY_BLANKS, p) == 0
