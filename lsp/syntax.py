"""tree-sitter grammars by editor language id, from the per-language wheels (no downloads, ever)."""

from __future__ import annotations

import importlib
import threading
from functools import cache
from pathlib import PurePath

import tree_sitter

# language id -> (module, function returning the grammar)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "javascriptreact": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

_EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascriptreact",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescriptreact",
    ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
}  # fmt: skip

_local = threading.local()


def language_id_for_path(path: str | PurePath) -> str | None:
    return _EXTENSIONS.get(PurePath(path).suffix.lower())


def normalise_language_id(
    language_id: str | None, path: str | PurePath | None = None
) -> str | None:
    """The editor's id when we have a grammar for it, else one guessed from the file name."""
    lid = (language_id or "").lower()
    if lid in _GRAMMARS:
        return lid
    aliases = {"py": "python", "js": "javascript", "ts": "typescript", "c++": "cpp", "golang": "go"}
    if lid in aliases:
        return aliases[lid]
    return language_id_for_path(path) if path is not None else None


@cache
def language(language_id: str) -> tree_sitter.Language | None:
    spec = _GRAMMARS.get(language_id)
    if spec is None:
        return None
    module = importlib.import_module(spec[0])
    return tree_sitter.Language(getattr(module, spec[1])())


def parser(language_id: str) -> tree_sitter.Parser | None:
    """A parser for this thread (tree-sitter parsers must not be shared across threads)."""
    parsers: dict[str, tree_sitter.Parser] = getattr(_local, "parsers", None) or {}
    _local.parsers = parsers
    if language_id not in parsers:
        lang = language(language_id)
        if lang is None:
            return None
        parsers[language_id] = tree_sitter.Parser(lang)
    return parsers[language_id]


def parse(language_id: str, text: str) -> tree_sitter.Tree | None:
    p = parser(language_id)
    return p.parse(text.encode("utf-8")) if p is not None else None


def error_count(tree: tree_sitter.Tree) -> int:
    """ERROR and MISSING nodes: how broken the parse is. Cheap when the tree has no error."""
    root = tree.root_node
    if not root.has_error:
        return 0
    count = 0
    cursor = root.walk()
    visited_children = False
    while True:
        node = cursor.node
        if not visited_children:
            if node is not None and (node.is_error or node.is_missing):
                count += 1
                visited_children = True  # an ERROR's inside counts once
                continue
            if node is not None and node.has_error and cursor.goto_first_child():
                continue
            visited_children = True
        elif cursor.goto_next_sibling():
            visited_children = False
        elif not cursor.goto_parent():
            return count
