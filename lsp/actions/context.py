"""Repository context for an action: the definitions its code uses, looked up in the index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lsp.index import Definition

_USEFUL = frozenset({"function", "method", "class", "interface", "type", "enum", "constant"})


class DefinitionSource(Protocol):
    """The part of `WorkspaceIndex` this needs (thread-safe there)."""

    def definitions(self, name: str) -> list[Definition]: ...


def definitions_used(
    index: DefinitionSource,
    names: Sequence[str],
    *,
    path: str,
    skip: tuple[int, int],
    budget_chars: int,
    per_name: int = 2,
) -> list[tuple[str, str]]:
    """(path, text) of the definitions of `names`, in order of use, within `budget_chars`.

    `skip` is the line span of the code itself in `path`: its own definitions are not context.
    """
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, int]] = set()
    used = 0
    for name in names:
        if len(name) < 2:
            continue
        found = [d for d in index.definitions(name) if d.kind in _USEFUL]
        found.sort(key=lambda d: (d.path != path, d.path, d.start_line))
        for d in found[:per_name]:
            if d.path == path and skip[0] <= d.start_line <= skip[1]:
                continue
            key = (d.path, d.start_line)
            if key in seen:
                continue
            text = (d.source or d.signature).strip()
            if not text:
                continue
            if used + len(text) + len(d.path) + 16 > budget_chars:
                continue
            seen.add(key)
            used += len(text) + len(d.path) + 16
            out.append((d.path, text))
    return out
