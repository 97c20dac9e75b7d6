"""Cache-aware split of a document around the cursor.

Order in the prompt: context block, the prefix *without* the cursor's line, the suffix, then the
cursor line up to the cursor after the FIM-middle token. Typing on one line changes only the last
few tokens, so the model's KV cache is reused. The prefix starts on a line snapped to a multiple of
`ANCHOR_LINES`, so it does not slide (and invalidate the cache) on every new line.
"""

from __future__ import annotations

from dataclasses import dataclass

ANCHOR_LINES = 32
CHARS_PER_TOKEN = 3.2  # a safe estimate for code; the exact count comes from the tokenizer


@dataclass(frozen=True)
class Layout:
    prefix: str
    """Whole lines before the cursor's line (within the budget)."""
    middle: str
    """The cursor's line up to the cursor."""
    suffix: str
    """From the cursor to the end of the suffix window."""
    line_suffix: str
    """The rest of the cursor's line after the cursor."""
    cursor_line: int
    prefix_start_line: int


def split(text: str, offset: int, *, budget_tokens: int, prefix_ratio: float) -> Layout:
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    if line_end < 0:
        line_end = len(text)
    middle = text[line_start:offset]
    line_suffix = text[offset:line_end]

    prefix_budget = int(budget_tokens * prefix_ratio * CHARS_PER_TOKEN)
    suffix_budget = int(budget_tokens * (1 - prefix_ratio) * CHARS_PER_TOKEN)

    before_lines = text[:line_start].splitlines(keepends=True)
    cursor_line = len(before_lines)
    used = len(middle)
    start = cursor_line
    while start > 0 and used + len(before_lines[start - 1]) <= prefix_budget:
        start -= 1
        used += len(before_lines[start])
    if start > 0:  # cut: snap to a stable anchor so the prompt head stays put while typing
        snapped = -(-start // ANCHOR_LINES) * ANCHOR_LINES
        start = min(snapped, cursor_line)
    prefix = "".join(before_lines[start:])

    after = text[offset:]
    if len(after) > suffix_budget:
        cut = after.rfind("\n", 0, suffix_budget)
        after = after[: cut + 1] if cut >= 0 else after[:suffix_budget]
    return Layout(
        prefix=prefix,
        middle=middle,
        suffix=after,
        line_suffix=line_suffix,
        cursor_line=cursor_line,
        prefix_start_line=start,
    )
