"""Plain records shared by the index modules: no tree-sitter nodes, no protocol types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal[
    "function",
    "method",
    "class",
    "interface",
    "type",
    "enum",
    "constant",
    "variable",
    "module",
    "macro",
]

KINDS: tuple[Kind, ...] = (
    "function",
    "method",
    "class",
    "interface",
    "type",
    "enum",
    "constant",
    "variable",
    "module",
    "macro",
)

#: Kinds that hold members: their definitions become the `container` of what they enclose.
CONTAINER_KINDS: frozenset[str] = frozenset({"class", "interface", "type", "enum", "module"})


@dataclass(frozen=True, slots=True)
class Definition:
    """One definition. Lines are 0-based; columns count UTF-16 code units (the LSP default).

    `start_*`/`end_*` span the whole definition (decorators and export included, its doc comment
    not); `name_*` is the name itself (an LSP selection range). `source` is the full text when the
    definition is small enough to show whole, else None.
    """

    name: str
    kind: Kind
    path: str
    start_line: int
    start_col: int
    end_line: int
    end_col: int
    name_line: int
    name_col: int
    name_end_col: int
    container: str | None = None
    signature: str = ""
    doc: str = ""
    source: str | None = None


@dataclass(slots=True)
class SymbolNode:
    """A definition with the definitions it contains, for an outline."""

    definition: Definition
    children: list[SymbolNode]


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One import as written: `module` is the raw spec (`.util.money`, `./math`, a Go import path,
    `crate::shapes::Triangle`, `mod:units`, `vec.h`); `names` are the names it binds when known."""

    module: str
    names: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True, slots=True)
class FileSymbols:
    """What one parse of one file yields."""

    language: str
    definitions: tuple[Definition, ...]
    references: frozenset[str]
    imports: tuple[ImportSpec, ...]


@dataclass(frozen=True, slots=True)
class Snippet:
    """A piece of repository context for a prompt; `path` is relative to the workspace root."""

    path: str
    text: str
    score: float
    kind: str
    start_line: int = 0


@dataclass(slots=True)
class IndexStats:
    """What one `index_all` did; `parsed` counts files run through the parser."""

    files_seen: int = 0
    parsed: int = 0
    unchanged: int = 0
    touched: int = 0
    removed: int = 0
    skipped: int = 0
    definitions: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    skipped_paths: list[str] = field(default_factory=list)
