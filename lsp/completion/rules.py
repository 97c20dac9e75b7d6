"""Stop rules and post-processing for FIM output: pure functions over strings and a parse check.

The instruct models we ship fill the hole and then keep going (new top-level code, a repeat of the
suffix). These rules decide what is shown: they run between tokens (so nothing is generated that
would be thrown away) and once more on the final text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsp import syntax

BLOCK_OPENERS = (":", "{", "(", "[", "=>", " do", "->")
_INDENT = re.compile(r"[ \t]*")


@dataclass(frozen=True)
class Plan:
    multiline: bool
    block_indent: int
    """Generated lines indented less than this end the completion (multi-line mode)."""
    next_line: str
    """The suffix's next non-empty line, stripped; the completion must not repeat it."""
    line_suffix: str
    """What follows the cursor on its line (closing brackets the completion must not repeat)."""
    nearby_indent: int = 0
    """The deepest indentation around the cursor (its line, the lines before and after)."""


def indent_width(line: str) -> int:
    return len(_INDENT.match(line).group(0).expandtabs(4))  # type: ignore[union-attr]


def _prev_nonblank(prefix: str) -> str:
    for line in reversed(prefix.splitlines()):
        if line.strip():
            return line
    return ""


def _next_nonblank(suffix_after_line: str) -> str:
    for line in suffix_after_line.splitlines():
        if line.strip():
            return line
    return ""


def plan(
    *,
    prefix: str,
    middle: str,
    suffix: str,
    language_id: str | None,
    text: str | None = None,
    offset: int | None = None,
) -> Plan:
    """Single-line mid-expression; multi-line for an empty block body or the end of a block."""
    nl = suffix.find("\n")
    line_suffix = suffix if nl < 0 else suffix[:nl]
    rest = "" if nl < 0 else suffix[nl + 1 :]
    next_line = _next_nonblank(rest)
    opener_line = middle if middle.strip() else _prev_nonblank(prefix)
    opens_block = opener_line.rstrip().endswith(BLOCK_OPENERS) and not line_suffix.strip()

    in_literal = False
    if language_id and text is not None and offset is not None:
        in_literal = _inside_string_or_comment(language_id, text, offset)

    if in_literal:
        multiline = False
    elif middle.strip():
        multiline = opens_block
    elif opens_block:
        multiline = True
    else:
        # A blank line: several lines when it ends its block (nothing more at this depth follows).
        multiline = (
            not next_line
            or indent_width(next_line) < indent_width(middle)
            or (
                indent_width(next_line) <= indent_width(middle)
                and next_line.lstrip().startswith(("}", ")", "]"))
            )
        )

    if middle.strip():
        base = indent_width(middle)
        block_indent = base + 1 if opens_block else base
    elif opens_block:
        block_indent = max(indent_width(middle), indent_width(opener_line) + 1)
    else:
        block_indent = indent_width(middle)
    nearby = max(block_indent, indent_width(_prev_nonblank(prefix)), indent_width(next_line))
    return Plan(multiline, block_indent, next_line.strip(), line_suffix, nearby)


def _inside_string_or_comment(language_id: str, text: str, offset: int) -> bool:
    tree = syntax.parse(language_id, text)
    if tree is None:
        return False
    point = len(text[:offset].encode("utf-8"))
    node = tree.root_node.descendant_for_byte_range(max(point - 1, 0), point)
    while node is not None:
        kind = node.type
        if "comment" in kind or kind in {"string_content", "string_fragment", "template_string"}:
            return node.end_byte > point - 1 and "\n" not in text[offset : offset + 1]
        if kind in {"string", "raw_string_literal", "interpreted_string_literal"}:
            return node.start_byte < point < node.end_byte
        node = node.parent
    return False


RUNAWAY_BLANKS = 16
"""A first line of nothing but blanks, this many columns beyond the deepest indentation around
the cursor, ends the completion, empty (the model is lost; real code never indents so far)."""


def stop_at(text: str, p: Plan, *, first_line_indent: int | None = None) -> int | None:
    """Where the completion must end, given what has been generated so far (None: go on).

    `first_line_indent` is the indentation the model chose for the first line when the cursor
    stands on a blank line (the model writes the indentation itself there).
    """
    if first_line_indent is not None and p.multiline and first_line_indent < p.block_indent:
        return 0  # the model left the block at once: nothing belongs here
    head = text.split("\n", 1)[0]
    if not head.strip() and len(head.expandtabs(4)) >= p.nearby_indent + RUNAWAY_BLANKS:
        return 0  # blanks far beyond any indentation around: the model has nothing to say
    if not p.multiline:
        nl = text.find("\n")
        if nl >= 0 and (nl > 0 or text.strip()):
            return nl
        return None
    lines = text.split("\n")
    pos = len(lines[0]) + 1
    for i, line in enumerate(lines[1:], 1):
        stripped = line.strip()
        # A dedent shows with a line's first visible character (its indentation cannot change
        # after that), so the line still growing at the end is judged too: no tokens are spent
        # on a line that is thrown away. A repeat of the next line needs the whole line.
        if stripped and indent_width(line) < p.block_indent:
            return pos - 1
        complete = i < len(lines) - 1
        if complete and stripped and p.next_line and stripped == p.next_line and len(stripped) > 1:
            return pos - 1
        pos += len(line) + 1
    return None


def finish(text: str, p: Plan, *, complete: bool, first_line_indent: int | None = None) -> str:
    """Final clean-up: cut by the rules, drop an unfinished last line, trim overlap, whitespace."""
    probe = text + "\n" if p.multiline else text
    cut = stop_at(probe, p, first_line_indent=first_line_indent)
    if cut is not None:
        text = text[:cut]
    elif p.multiline and not complete and "\n" in text:
        text = text[: text.rfind("\n")]  # the limit cut a line in half
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1].strip() and len(lines) > 1:
        lines.pop()
    text = "\n".join(lines)
    if not p.multiline:
        text = text.rstrip()
    text = trim_suffix_overlap(text, p.line_suffix)
    return "" if not text.strip() else text


def trim_suffix_overlap(text: str, line_suffix: str) -> str:
    """Drop the end of the completion that the rest of the line already has (`)`, `):`, `];`)."""
    tail = line_suffix.strip()
    if not tail:
        return text
    stripped = text.rstrip()
    for k in range(min(len(tail), len(stripped)), 0, -1):
        if stripped.endswith(tail[:k]):
            return (
                stripped[: len(stripped) - k].rstrip()
                if k == len(tail)
                else stripped[: len(stripped) - k]
            )
    return text


def parse_guard(language_id: str | None, text: str, offset: int, completion: str, p: Plan) -> str:
    """Trim or drop a completion that makes the document's parse worse than it is without it."""
    if not language_id or syntax.language(language_id) is None or not completion:
        return completion
    _, window, local = _window(text, offset)
    before = syntax.parse(language_id, window)
    if before is None:
        return completion
    base = syntax.error_count(before)

    def worse(candidate: str) -> bool:
        tree = syntax.parse(language_id, window[:local] + candidate + window[local:])
        return tree is not None and syntax.error_count(tree) > base

    if not worse(completion):
        return completion
    for candidate in _shorter(completion, p):
        if candidate.strip() and not worse(candidate):
            return candidate
    return ""


def _window(text: str, offset: int, lines: int = 150) -> tuple[int, str, int]:
    """About `lines` lines either side of the cursor: parsing stays fast on big files."""
    start = offset
    for _ in range(lines):
        start = text.rfind("\n", 0, start)
        if start <= 0:
            start = 0
            break
    end = offset
    for _ in range(lines):
        nxt = text.find("\n", end + 1)
        if nxt < 0:
            end = len(text)
            break
        end = nxt
    return start, text[start:end], offset - start


def _shorter(completion: str, p: Plan) -> list[str]:
    if p.multiline and "\n" in completion:
        lines = completion.split("\n")
        return ["\n".join(lines[:n]) for n in range(len(lines) - 1, 0, -1)]
    cuts = [m.start() for m in re.finditer(r"[\s,;)\]}]", completion)]
    return [completion[:c].rstrip() for c in sorted(set(cuts), reverse=True)[:8]]
