"""Reply post-processing for code actions: code extraction, re-indentation, parse checks."""

from __future__ import annotations

import pytest

from lsp.actions import reply as R
from lsp.actions.languages import LANGUAGES
from lsp.actions.model import FileEdit, ReplyError, TextChange

PY = LANGUAGES["python"]


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("```python\ndef f():\n    return 1\n```\nThis returns one.", "def f():\n    return 1"),
        ("Here you go:\n\n```\nx = 1\n```", "x = 1"),
        ("```py\nx = 1\ny = 2", "x = 1\ny = 2"),  # cut off before the closing fence
        ("x = 1\n", "x = 1"),  # bare
        ("````markdown\n```python\nx\n```\n````", "```python\nx\n```"),  # longer fences nest
    ],
)
def test_extract_code_takes_the_first_fenced_block_or_the_bare_reply(reply, code):
    assert R.extract_code(reply) == code


def test_reindent_moves_code_to_its_place_and_unit():
    code = "if x:\n  y = 1\n\n  return y\n"
    expected = "        if x:\n            y = 1\n\n            return y"
    assert R.reindent(code, "        ", "    ") == expected
    assert R.reindent("for {\n    x++\n}", "\t", "\t") == "\tfor {\n\t\tx++\n\t}"


def test_indent_unit_reads_the_file():
    assert R.indent_unit("def f():\n  if x:\n    pass\n", "    ") == "  "
    assert R.indent_unit("func f() {\n\treturn\n}\n", "    ") == "\t"
    assert R.indent_unit("x = 1\n", "    ") == "    "


def test_line_changes_touch_only_changed_lines():
    old = "a = 1\nb = 2\nc = 3"
    new = "a = 1\nb = 20\nc = 3"
    changes = R.line_changes(old, new, base=100)
    assert changes == [TextChange(106, 112, "b = 20\n")]
    assert R.apply_changes("x" * 100 + old, changes) == "x" * 100 + new


def test_check_edit_accepts_valid_code_and_names_a_new_error():
    text = "def f():\n    pass\n"
    ok = FileEdit("file:///t.py", text, (TextChange(13, 17, "return 1"),))
    assert R.check_edit(PY, ok) == "def f():\n    return 1\n"
    broken = FileEdit("file:///t.py", text, (TextChange(13, 17, "return (1"),))
    with pytest.raises(ReplyError, match="line 2"):
        R.check_edit(PY, broken)


def test_check_edit_ignores_errors_that_were_there_before_elsewhere():
    text = "def f(:\n    pass\n\n\ndef g():\n    pass\n"
    start = text.rindex("pass")
    edit = FileEdit("file:///t.py", text, (TextChange(start, start + 4, "return 2"),))
    assert "return 2" in R.check_edit(PY, edit)


def test_trim_to_parse_drops_the_cut_off_tail():
    code = "def test_a():\n    assert f(1) == 1\n\n\ndef test_b():\n    assert f(2) == ("
    assert R.trim_to_parse(PY, code, keep=10) == "def test_a():\n    assert f(1) == 1"


def test_prose_becomes_a_comment_block_without_markdown_or_half_sentences():
    text = "This **adds** two numbers. It returns the sum. Here is how:\n\n1. It adds"
    prose = R.plain_prose(text, truncated=True)
    assert prose == "This adds two numbers. It returns the sum."
    block = R.comment_block("x " * 60, "    ", "#", width=40)
    lines = block.splitlines()
    assert len(lines) > 1 and all(line.startswith("    # ") for line in lines)
    assert max(len(line) for line in lines) <= 40


def test_fence_end_finds_the_closing_fence_only():
    assert R.fence_end("x = 1\n```\nmore") == 5
    assert R.fence_end("x = '```'") is None
    assert R.fence_end("```") == 0
