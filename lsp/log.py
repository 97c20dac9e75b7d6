"""Logging: stderr and an optional file, plus a handler that forwards to `window/logMessage`.

stdout is the protocol, so nothing here ever writes to it. Document text is only logged at debug.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str = "info", log_file: str | None = None) -> None:
    root = logging.getLogger("lsp")
    root.setLevel(level.upper())
    root.propagate = False
    if not any(getattr(h, "_hushcode_stderr", False) for h in root.handlers):
        # A private copy of fd 2: llama-cpp-python points fd 2 at /dev/null while it loads a model.
        stream = os.fdopen(
            os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace"
        )
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._hushcode_stderr = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if log_file:
        path = Path(log_file).expanduser()
        if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
            path.parent.mkdir(parents=True, exist_ok=True)
            _private_file(path)
            fh = logging.FileHandler(path, encoding="utf-8")
            fh.setFormatter(logging.Formatter(FORMAT))
            root.addHandler(fh)
    logging.getLogger("pygls").setLevel(max(logging.WARNING, root.level))


def _private_file(path: Path) -> None:
    """User-only, whatever the umask: the log names the user's files (and has text at debug)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass


def quiet_stderr(level: int = logging.WARNING) -> None:
    for handler in logging.getLogger("lsp").handlers:
        if getattr(handler, "_hushcode_stderr", False):
            handler.setLevel(level)


class ClientHandler(logging.Handler):
    """Forwards records to the editor's log. `send` must be safe to call from any thread."""

    def __init__(self, send: Callable[[int, str], None], level: int = logging.INFO) -> None:
        super().__init__(level)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(record.levelno, self.format(record))
        except Exception:  # never let logging break a request
            self.handleError(record)
