"""Completion cache with typing-through: typing what the suggestion says shows the rest at once."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

TAIL = 256


@dataclass(frozen=True)
class _Entry:
    uri: str
    before_len: int
    before_tail: str
    after_head: str
    completion: str


class CompletionCache:
    def __init__(self, size: int = 128) -> None:
        self._entries: OrderedDict[tuple[str, int, str], _Entry] = OrderedDict()
        self._size = size

    def store(self, uri: str, text: str, offset: int, completion: str) -> None:
        entry = _Entry(
            uri, offset, text[max(0, offset - TAIL) : offset], _after(text, offset), completion
        )
        key = (uri, offset, entry.before_tail)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def lookup(self, uri: str, text: str, offset: int) -> str | None:
        """The rest of a cached suggestion when the text typed since then is its beginning."""
        after = _after(text, offset)
        for entry in reversed(self._entries.values()):
            if entry.uri != uri or entry.after_head != after:
                continue
            typed_len = offset - entry.before_len
            if typed_len < 0 or typed_len >= len(entry.completion):
                continue
            if text[max(0, entry.before_len - TAIL) : entry.before_len] != entry.before_tail:
                continue
            typed = text[entry.before_len : offset]
            if entry.completion.startswith(typed):
                rest = entry.completion[typed_len:]
                if rest.strip():
                    return rest
        return None

    def clear(self, uri: str | None = None) -> None:
        if uri is None:
            self._entries.clear()
        else:
            for key in [k for k in self._entries if k[0] == uri]:
                del self._entries[key]


def _after(text: str, offset: int) -> str:
    return text[offset : offset + TAIL]
