"""The workspace index: tree-sitter definitions, imports and repository context for prompts.

Plain data in and out (paths, strings, offsets, dataclasses); no protocol types. The server
talks to `WorkspaceIndex` only.
"""

from .model import Definition, ImportSpec, IndexStats, Kind, Snippet, SymbolNode
from .workspace import WorkspaceIndex, nest

__all__ = [
    "Definition",
    "ImportSpec",
    "IndexStats",
    "Kind",
    "Snippet",
    "SymbolNode",
    "WorkspaceIndex",
    "nest",
]
