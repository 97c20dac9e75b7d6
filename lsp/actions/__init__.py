"""Code actions from the local model: listed for free, generated on resolve.

- Listing (`ActionEngine.list_actions`) reads only the tree-sitter tree at the range: add a
  docstring or doc comment, explain, fix a diagnostic, implement a stub, write unit tests,
  simplify a selection, add type hints (Python). No model call; `metrics.model_calls` proves it.
- Resolve (`ActionEngine.resolve`) renders the prompt of `prompts/actions/<kind>.toml` through the
  model file's own chat template, with the repository definitions the code uses, generates
  (giving way to completions, see `engine`), and turns the reply into an edit that is re-indented
  to its place and parsed with tree-sitter (`reply.check_edit`); one retry, then an error and no
  edit. A target whose document version changed is refused (`StaleDocument`).
- "Explain" inserts the explanation as a comment block above the code: a plain edit is shown
  the same way by every editor (VS Code, Neovim, ...), stays next to the code it explains, and
  is undone with the editor's own undo; a separate document or a hover would behave differently
  in each client.

Domain code only: no pygls, no lsprotocol; `lsp/server.py` translates.
"""

from lsp.actions.engine import ActionEngine, ActionMetrics
from lsp.actions.model import (
    ActionCancelled,
    ActionEdit,
    ActionError,
    ActionKind,
    Diagnostic,
    Document,
    FileEdit,
    Offer,
    StaleDocument,
    Target,
    TextChange,
)

__all__ = [
    "ActionCancelled",
    "ActionEdit",
    "ActionEngine",
    "ActionError",
    "ActionKind",
    "ActionMetrics",
    "Diagnostic",
    "Document",
    "FileEdit",
    "Offer",
    "StaleDocument",
    "Target",
    "TextChange",
]
