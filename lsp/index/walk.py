"""Find the workspace files worth indexing, and read one safely."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import languages
from .ignore import IgnoreMatcher

log = logging.getLogger(__name__)

BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class FileStat:
    mtime_ns: int
    size: int


def walk(
    root: Path,
    matcher: IgnoreMatcher,
    *,
    max_file_bytes: int,
    under: str = "",
    cancel: Callable[[], bool] | None = None,
) -> tuple[dict[str, FileStat], list[str]]:
    """Indexable files under `root/under`: `{relative path: stat}`, and the oversize ones skipped.

    Prunes excluded and ignored directories before descending, never follows directory
    symlinks, and keeps only files of a registered language.
    """
    found: dict[str, FileStat] = {}
    oversize: list[str] = []
    stack = [under]
    while stack:
        if cancel is not None and cancel():
            break
        rel_dir = stack.pop()
        base = root / rel_dir if rel_dir else root
        try:
            entries = list(os.scandir(base))
        except OSError as exc:
            log.debug("cannot list %s: %s", base, exc)
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not matcher.match(rel, True):
                        stack.append(rel)
                    continue
                if not entry.is_file():
                    continue
            except OSError:
                continue
            if os.path.splitext(entry.name)[1].lower() not in languages.EXTENSIONS:
                continue
            if matcher.match(rel, False):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            if st.st_size > max_file_bytes:
                oversize.append(rel)
                continue
            found[rel] = FileStat(st.st_mtime_ns, st.st_size)
    return found, oversize


def is_binary(data: bytes) -> bool:
    return b"\x00" in data[:BINARY_SNIFF_BYTES]


def decode(data: bytes) -> str | None:
    """The text of a file, or None for binary or non-UTF-8 content (never indexed)."""
    if is_binary(data):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
