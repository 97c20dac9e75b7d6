"""From the model's reply to text that fits its place: code extraction, re-indentation, checks.

Nothing here trusts the reply: code is taken from the first fenced block (or the bare reply),
re-indented to the target's indentation and unit, and every edit is parsed with tree-sitter
before it leaves the server (`check_edit`): an edit that adds ERROR nodes is refused.
"""

from __future__ import annotations

import difflib
import re
import textwrap

import tree_sitter as ts

from lsp.actions import tree as T
from lsp.actions.languages import ActionLanguage
from lsp.actions.model import FileEdit, ReplyError, TextChange

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n`]*$", re.MULTILINE)


def extract_code(reply: str) -> str:
    """The first fenced block's content (an unterminated block runs to the end), else the reply."""
    match = _FENCE.search(reply)
    if match is None:
        return reply.strip("\n")
    fence = match.group(1)
    body_start = match.end() + 1
    close = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
    lines = reply[body_start:].split("\n")
    out: list[str] = []
    for line in lines:
        if close.match(line):
            break
        out.append(line)
    return "\n".join(out).strip("\n")


def fence_end(text: str) -> int | None:
    """Where a closing fence starts in generated text (the opening one is in the prefill)."""
    match = re.search(r"(?:^|\n)[ \t]*```", text)
    return None if match is None else match.start()


def dedent(code: str) -> str:
    return textwrap.dedent(code.expandtabs(8) if _mixed(code) else code).strip("\n")


def _mixed(code: str) -> bool:
    leads = {line[0] for line in code.split("\n") if line[:1] in (" ", "\t")}
    return len(leads) > 1


def indent_unit(text: str, default: str) -> str:
    """The file's indentation unit: a tab, or the most common step between indented lines."""
    steps: dict[int, int] = {}
    previous = 0
    tabs = spaces = 0
    for line in text.split("\n")[:2000]:
        if not line.strip():
            continue
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if lead.startswith("\t"):
            tabs += 1
            continue
        width = len(lead)
        if width:
            spaces += 1
        if width > previous:
            steps[width - previous] = steps.get(width - previous, 0) + 1
        previous = width
    if tabs > spaces:
        return "\t"
    good = {k: v for k, v in steps.items() if k in (2, 3, 4, 8)}
    if not good:
        return default
    return " " * max(good, key=lambda k: (good[k], -k))


def convert_indent(code: str, source_unit: str, target_unit: str) -> str:
    if source_unit == target_unit:
        return code
    out = []
    for line in code.split("\n"):
        stripped = line.lstrip(" \t")
        lead = line[: len(line) - len(stripped)]
        if source_unit == "\t":
            level, rest = lead.count("\t"), lead.replace("\t", "")
        else:
            expanded = lead.replace("\t", source_unit)
            level, extra = divmod(len(expanded), len(source_unit))
            rest = " " * extra
        out.append(target_unit * level + rest + stripped)
    return "\n".join(out)


def reindent(code: str, indent: str, unit: str) -> str:
    """`code` dedented, its indentation unit changed to `unit`, every line prefixed by `indent`."""
    code = dedent(code)
    code = convert_indent(code, indent_unit(code, unit), unit)
    return "\n".join(indent + line if line.strip() else "" for line in code.split("\n"))


def line_changes(old: str, new: str, base: int) -> list[TextChange]:
    """Only the changed lines, as changes at `base + offset`: other lines stay byte-identical."""
    a = old.splitlines(keepends=True)
    b = new.splitlines(keepends=True)
    if a and not a[-1].endswith("\n") and b and b[-1].endswith("\n"):
        b[-1] = b[-1][:-1]
    offsets = [0]
    for line in a:
        offsets.append(offsets[-1] + len(line))
    changes: list[TextChange] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        changes.append(TextChange(base + offsets[i1], base + offsets[i2], "".join(b[j1:j2])))
    return changes


def apply_changes(text: str, changes: tuple[TextChange, ...] | list[TextChange]) -> str:
    out = []
    pos = 0
    for change in sorted(changes, key=lambda c: (c.start, c.end)):
        if change.start < pos:
            raise ReplyError("overlapping changes")
        out.append(text[pos : change.start])
        out.append(change.text)
        pos = change.end
    out.append(text[pos:])
    return "".join(out)


def _new_regions(changes: tuple[TextChange, ...]) -> list[tuple[int, int, int, int]]:
    """(old_start, old_end, new_start, new_end) per change, in str offsets."""
    shift = 0
    regions = []
    for c in sorted(changes, key=lambda c: (c.start, c.end)):
        new_start = c.start + shift
        regions.append((c.start, c.end, new_start, new_start + len(c.text)))
        shift += len(c.text) - (c.end - c.start)
    return regions


def check_edit(lang: ActionLanguage, edit: FileEdit) -> str:
    """Parse the edited file: no new ERROR/MISSING nodes in the edited regions nor in the file.

    Returns the new text; raises ReplyError naming the first problem.
    """
    new_text = apply_changes(edit.text, edit.changes)
    after = T.parse(lang, new_text)
    if after is None:
        return new_text
    before = T.parse(lang, edit.text) if edit.text else None
    old_total = before.errors if before is not None else 0
    for old_start, old_end, new_start, new_end in _new_regions(edit.changes):
        new_errors = after.problems_in(after.source.byte(new_start), after.source.byte(new_end))
        old_errors = (
            before.problems_in(before.source.byte(old_start), before.source.byte(old_end))
            if before is not None
            else []
        )
        if len(new_errors) > len(old_errors):
            raise ReplyError(describe_error(after, new_errors[0]))
    if after.errors > old_total:
        first = after.problems_in(0, len(after.source.data))
        raise ReplyError(describe_error(after, first[0]) if first else "the code does not parse")
    return new_text


def describe_error(parsed: T.Parsed, node: ts.Node) -> str:
    line = node.start_point.row
    text = parsed.text.split("\n")[line].strip() if line < parsed.text.count("\n") + 1 else ""
    if node.type == "block" and not node.is_error:
        line = node.parent.start_point.row if node.parent is not None else line
        text = parsed.text.split("\n")[line].strip()
        return f"an empty block after line {line + 1}: `{text[:80]}`"
    what = "missing " + node.type if node.is_missing else "a syntax error"
    return f"{what} at line {line + 1}: `{text[:80]}`"


def trim_to_parse(lang: ActionLanguage, code: str, keep: int) -> str:
    """Drop trailing lines of truncated code until it parses (never below `keep` characters)."""
    lines = code.split("\n")
    while lines:
        candidate = "\n".join(lines).rstrip()
        if len(candidate) < keep:
            break
        parsed = T.parse(lang, candidate + "\n")
        if parsed is None or parsed.errors == 0:
            return candidate
        lines.pop()
    return code


def drop_incomplete_last_line(text: str) -> str:
    """Output cut by a token limit ends mid-line: drop that line."""
    head, sep, _ = text.rpartition("\n")
    return head if sep else text


# -- prose ---------------------------------------------------------------------------------------

_MARKDOWN = re.compile(r"\*\*|__|^#+\s*|^\s*[-*]\s+|^\s*\d+\.\s+", re.MULTILINE)


def plain_prose(text: str, *, truncated: bool) -> str:
    """An explanation as plain sentences: no Markdown, no code blocks, no half sentence."""
    text = re.sub(r"```.*?(```|$)", "", text, flags=re.DOTALL)
    text = _MARKDOWN.sub("", text)
    text = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?:])\s+", text.strip())
    while sentences and (
        sentences[-1].endswith(":") or (truncated and sentences[-1][-1:] not in ".!?")
    ):
        sentences.pop()  # an intro to a list that was cut, or half a sentence
    return " ".join(sentences).strip()


def comment_block(text: str, indent: str, marker: str, width: int = 88) -> str:
    """`text` wrapped into line comments at `indent`, each line ending in a newline."""
    room = max(24, width - len(indent) - len(marker) - 1)
    lines = textwrap.wrap(text, room, break_long_words=False, break_on_hyphens=False) or [""]
    return "".join(f"{indent}{marker} {line}".rstrip() + "\n" for line in lines)
