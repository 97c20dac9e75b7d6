"""Plain records of the code-action domain: no protocol types, no tree-sitter nodes.

Offsets are indexes into the document's `str` (code points); the server maps them to and from
LSP positions with the document's own position codec.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ActionKind(enum.StrEnum):
    """Our action ids (`data.kind`); `lsp_kind` is the LSP `CodeActionKind` each is listed under."""

    FIX = "fix"
    IMPLEMENT = "implement"
    DOCSTRING = "docstring"
    TYPE_HINTS = "type_hints"
    SIMPLIFY = "simplify"
    EXPLAIN = "explain"
    TESTS = "tests"

    @property
    def lsp_kind(self) -> str:
        if self is ActionKind.FIX:
            return "quickfix"
        if self is ActionKind.TESTS:
            return "source"
        return "refactor.rewrite"


@dataclass(frozen=True)
class Document:
    """The text an action was listed or resolved against."""

    uri: str
    text: str
    language: str | None
    """A language id `lsp.syntax` has a grammar for, or None."""
    version: int | None = None
    path: Path | None = None
    root: Path | None = None
    """The workspace root (test files are placed relative to it)."""

    @property
    def rel(self) -> str:
        """The path as shown to the model: relative to the root when inside it."""
        if self.path is None:
            return self.uri.rsplit("/", 1)[-1]
        if self.root is not None:
            try:
                return self.path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                pass
        return self.path.name


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic from the request's context (another tool's, typically a linter's)."""

    message: str
    start: int
    end: int
    source: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Target:
    """What a listed action acts on; travels in `CodeAction.data` and comes back on resolve."""

    kind: ActionKind
    start: int
    end: int
    name: str = ""
    version: int | None = None
    """The document version at listing; resolve refuses any other."""
    message: str = ""
    """The diagnostic's message (fix only)."""
    line: int = -1
    """The flagged line, 0-based (fix only)."""
    selection: bool = False
    """The target is the user's selection rather than a definition."""

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "start": self.start, "end": self.end}
        if self.name:
            data["name"] = self.name
        if self.message:
            data["message"] = self.message
        if self.line >= 0:
            data["line"] = self.line
        if self.selection:
            data["selection"] = True
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any], version: int | None) -> Target:
        """The inverse of `to_data`; raises ValueError on anything malformed."""
        try:
            return cls(
                kind=ActionKind(data["kind"]),
                start=int(data["start"]),
                end=int(data["end"]),
                name=str(data.get("name", "")),
                version=version,
                message=str(data.get("message", "")),
                line=int(data.get("line", -1)),
                selection=bool(data.get("selection", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed code action data: {exc}") from exc


@dataclass(frozen=True)
class Offer:
    """A listed action: a title and the target to resolve later. Costs no model call."""

    title: str
    target: Target

    @property
    def kind(self) -> ActionKind:
        return self.target.kind


@dataclass(frozen=True)
class TextChange:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class FileEdit:
    """Changes to one file; `text` is the content they apply to ("" for a file to create)."""

    uri: str
    text: str
    changes: tuple[TextChange, ...]
    create: bool = False


@dataclass(frozen=True)
class ActionEdit:
    title: str
    files: tuple[FileEdit, ...]
    notes: list[str] = field(default_factory=list)


class ActionError(Exception):
    """A resolve that produces no edit; the message is shown to the user as is."""


class StaleDocument(ActionError):
    """The document changed after the action was listed."""


class ActionCancelled(ActionError):
    """Cancelled from the editor (`$/cancelRequest` or the progress's cancel button)."""


class ReplyError(Exception):
    """The model's reply could not become a valid edit; the reason feeds the one retry."""
