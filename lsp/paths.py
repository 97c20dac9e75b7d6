"""Where hushcode keeps its files: one user-only cache directory, never inside the workspace."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache: `$HUSHCODE_HOME`, else `$XDG_CACHE_HOME/hushcode`, else `~/.cache/hushcode`.

    Created with mode 0700 because it holds the index of the user's code.
    """
    explicit = os.environ.get("HUSHCODE_HOME")
    if explicit:
        base = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hushcode"
    return ensure_private_dir(base)


def models_dir() -> Path:
    return ensure_private_dir(home() / "models")


def index_dir() -> Path:
    return ensure_private_dir(home() / "index")


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError:
        pass
    return path


def prompts_dir() -> Path:
    """Prompt templates: inside the installed package (wheel), else the repository's `prompts/`."""
    here = Path(__file__).resolve().parent
    packaged = here / "prompts"
    if packaged.is_dir():
        return packaged
    return here.parent / "prompts"
