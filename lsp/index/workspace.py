"""`WorkspaceIndex`: the one object the server talks to.

Thread-safe: every method may be called from any thread (the server's worker, the watcher's
thread). Parsing of disk files happens outside the lock, so queries keep answering with what is
there while a first index runs. Open documents win over disk until they are closed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter as ts

from . import languages
from . import retrieve as _rt
from .ignore import IgnoreMatcher
from .languages import LanguageSpec
from .model import (
    CONTAINER_KINDS,
    Definition,
    FileSymbols,
    ImportSpec,
    IndexStats,
    Snippet,
    SymbolNode,
)
from .parse import extract, parse, read_imports
from .resolve import Resolver
from .store import FileRecord, FileRow, Store
from .walk import decode, walk
from .watch import Watcher

log = logging.getLogger(__name__)

BATCH_FILES = 200
MAX_RECENT = 16
PROGRESS_EVERY = 50


def _never() -> bool:
    return False


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(slots=True)
class _OpenDoc:
    spec: LanguageSpec
    text: str
    source: bytes
    tree: ts.Tree
    symbols: FileSymbols
    indexed: bool = False
    version: int = 0


@dataclass(slots=True)
class _WindowCache:
    """Line windows of recent files, kept while their text is unchanged."""

    entries: OrderedDict[str, tuple[str, list[tuple[int, str, frozenset[str]]]]] = field(
        default_factory=OrderedDict
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str, text: str) -> list[tuple[int, str, frozenset[str]]]:
        digest = _hash(text.encode("utf-8"))
        with self.lock:
            hit = self.entries.get(key)
            if hit is not None and hit[0] == digest:
                self.entries.move_to_end(key)
                return hit[1]
        wins = _rt.windows(text)
        with self.lock:
            self.entries[key] = (digest, wins)
            while len(self.entries) > 2 * MAX_RECENT:
                self.entries.popitem(last=False)
        return wins


def _point(data: bytes, byte: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, byte)
    return row, byte - (data.rfind(b"\n", 0, byte) + 1)


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    la, lb = len(a), len(b)
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def diff_edit(old: bytes, new: bytes) -> tuple[int, int, int] | None:
    """The single edit turning `old` into `new`: (start, old_end, new_end) bytes, or None."""
    if old == new:
        return None
    n = min(len(old), len(new))
    prefix = _common_prefix(old, new, n)
    suffix = _common_suffix(old, new, n - prefix)
    return prefix, len(old) - suffix, len(new) - suffix


class WorkspaceIndex:
    """The workspace index: walk, parse, persist, watch, answer, retrieve."""

    def __init__(
        self,
        root: Path,
        db_path: Path | None,
        *,
        max_file_bytes: int = 512 * 1024,
        exclude: Sequence[str] = (),
        on_change: Callable[[list[Path]], None] | None = None,
        debounce_seconds: float = 0.2,
        poll_interval: float = 0.5,
        db_busy_timeout: float = 2.0,
    ):
        self.root = Path(os.path.abspath(root))
        self._real_root = Path(os.path.realpath(self.root))
        self.max_file_bytes = max_file_bytes
        self.on_change = on_change
        self._debounce = debounce_seconds
        self._poll_interval = poll_interval
        self._lock = threading.RLock()
        self._index_lock = threading.Lock()
        self._store = Store(db_path, busy_timeout=db_busy_timeout)
        self._matcher = IgnoreMatcher(self.root, list(exclude))
        self._resolver = Resolver(self.root, self._store.paths())
        self._open: dict[str, _OpenDoc] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._windows = _WindowCache()
        self._watcher: Watcher | None = None
        self._closed = False
        #: Files run through the parser since this object was made (tests and benchmarks).
        self.parse_count = 0

    # -- paths ----------------------------------------------------------------------------

    def rel(self, path: Path | str) -> str | None:
        """`path` relative to the root as a POSIX string, or None when outside the workspace."""
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        text = os.path.normpath(str(p))
        for base in (str(self.root), str(self._real_root)):
            if text == base:
                return ""
            if text.startswith(base.rstrip(os.sep) + os.sep):
                return Path(text[len(base.rstrip(os.sep)) + 1 :]).as_posix()
        real = os.path.realpath(text)
        if real.startswith(str(self._real_root).rstrip(os.sep) + os.sep):
            return Path(real[len(str(self._real_root).rstrip(os.sep)) + 1 :]).as_posix()
        return None

    def abspath(self, rel: str) -> Path:
        return self.root / rel

    def is_ignored(self, path: Path | str) -> bool:
        """Whether a path is outside the index: outside the root, excluded or gitignored."""
        rel = self.rel(path)
        return rel is None or rel == "" or self._matcher.is_ignored(rel)

    def _indexable(self, rel: str | None) -> bool:
        return (
            bool(rel)
            and languages.for_path(rel or "") is not None
            and not self._matcher.is_ignored(rel or "")
        )

    @property
    def needs_reindex(self) -> bool:
        """True when the database was lost after opening (corrupted or locked mid-session):
        call `index_all` again to refill it."""
        return self._store.lost

    @property
    def in_memory(self) -> bool:
        """True when the index could not use its database file (locked, unwritable)."""
        return self._store.in_memory

    # -- whole workspace ------------------------------------------------------------------

    def index_all(
        self,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] = _never,
    ) -> IndexStats:
        """Walk the workspace and bring the index up to date; re-reads only changed files."""
        with self._index_lock:
            stats = self._index_all(progress, cancel)
            if self._store.lost and not stats.cancelled:
                self._store.lost = False
                self._restore_open()
                stats = self._index_all(progress, cancel)
            return stats

    def _restore_open(self) -> None:
        """Write the open buffers into a database that replaced the old one."""
        with self._lock:
            records = [
                FileRecord(key, 0, -1, "open:" + _hash(doc.source), "ok", doc.symbols)
                for key, doc in self._open.items()
                if doc.indexed
            ]
            self._store.write(records)

    def _recover(self) -> None:
        """The database was replaced mid-session (locked, full, corrupt): refill it. The caller
        holds the index lock."""
        if self._store.lost and not self._closed:
            log.warning("index database replaced; re-indexing %s", self.root)
            self._store.lost = False
            self._restore_open()
            self._index_all(None, _never)

    def _index_all(
        self, progress: Callable[[int, int], None] | None, cancel: Callable[[], bool]
    ) -> IndexStats:
        t0 = time.perf_counter()
        stats = IndexStats()
        found, oversize = walk(
            self.root, self._matcher, max_file_bytes=self.max_file_bytes, cancel=cancel
        )
        stats.files_seen = len(found)
        stats.skipped += len(oversize)
        stats.skipped_paths.extend(oversize)
        if cancel():
            stats.cancelled = True
            return stats
        with self._lock:
            rows = self._store.file_rows()
            open_keys = set(self._open)
        removed = [p for p in rows if p not in found and p not in open_keys]
        if removed:
            with self._lock:
                self._store.write(deletes=removed)
                for p in removed:
                    self._resolver.remove(p)
            stats.removed = len(removed)
        todo: list[str] = []
        for rel, st in found.items():
            if rel in open_keys:
                continue
            row = rows.get(rel)
            if row is not None and row.mtime_ns == st.mtime_ns and row.size == st.size:
                stats.unchanged += 1
                continue
            todo.append(rel)
        total = len(found)
        done = total - len(todo)
        if progress is not None:
            progress(done, total)
        self._refresh(
            todo, rows, stats, force=False, progress=progress, done=done, total=total, cancel=cancel
        )
        stats.definitions = self._store.counts()[1]
        stats.seconds = time.perf_counter() - t0
        log.info(
            "indexed %s: %d files, %d parsed, %d unchanged, %d removed, %d skipped in %.2f s",
            self.root,
            stats.files_seen,
            stats.parsed,
            stats.unchanged,
            stats.removed,
            stats.skipped,
            stats.seconds,
        )
        return stats

    def _refresh(
        self,
        rels: Sequence[str],
        rows: dict[str, FileRow],
        stats: IndexStats,
        *,
        force: bool,
        progress: Callable[[int, int], None] | None = None,
        done: int = 0,
        total: int = 0,
        cancel: Callable[[], bool] = _never,
    ) -> list[str]:
        """Re-read `rels` from disk (outside the lock) and write them in batches; returns the
        paths whose index entry changed."""
        changed: list[str] = []
        last_report = done
        for i in range(0, len(rels), BATCH_FILES):
            records: list[FileRecord] = []
            touches: list[tuple[str, int, int]] = []
            deletes: list[str] = []
            for rel in rels[i : i + BATCH_FILES]:
                if cancel():
                    stats.cancelled = True
                    break
                done += 1
                outcome = self._read_one(rel, rows.get(rel), stats, force)
                if isinstance(outcome, FileRecord):
                    records.append(outcome)
                elif isinstance(outcome, tuple):
                    touches.append(outcome)
                elif outcome == "delete":
                    deletes.append(rel)
            with self._lock:
                records = [r for r in records if r.path not in self._open]
                deletes = [d for d in deletes if d not in self._open and d in rows]
                self._store.write(records, touches, deletes)
                for rec in records:
                    if rec.status == "ok":
                        self._resolver.add(rec.path)
                    else:
                        self._resolver.remove(rec.path)
                for rel in deletes:
                    self._resolver.remove(rel)
            changed.extend(r.path for r in records)
            changed.extend(deletes)
            stats.removed += len(deletes)
            if progress is not None and (done - last_report >= PROGRESS_EVERY or done == total):
                progress(done, total)
                last_report = done
            if stats.cancelled:
                break
        if progress is not None and done != last_report:
            progress(done, total)
        return changed

    def _read_one(
        self, rel: str, row: FileRow | None, stats: IndexStats, force: bool
    ) -> FileRecord | tuple[str, int, int] | str | None:
        path = self.root / rel
        try:
            st = path.stat()
        except OSError:
            return "delete"
        if st.st_size > self.max_file_bytes:
            stats.skipped += 1
            stats.skipped_paths.append(rel)
            return "delete"
        same_stat = row is not None and (row.mtime_ns, row.size) == (st.st_mtime_ns, st.st_size)
        if not force and same_stat:
            stats.unchanged += 1
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return "delete"
        if len(data) > self.max_file_bytes:
            stats.skipped += 1
            return "delete"
        digest = _hash(data)
        if row is not None and row.hash == digest:
            stats.touched += 1
            return (rel, st.st_mtime_ns, st.st_size)
        spec = languages.for_path(rel)
        if spec is None or decode(data) is None:
            stats.skipped += 1
            stats.skipped_paths.append(rel)
            return FileRecord(rel, st.st_mtime_ns, st.st_size, digest, "binary", None)
        tree = parse(spec, data)
        with self._lock:
            self.parse_count += 1
        stats.parsed += 1
        symbols = extract(spec, tree, data, rel)
        return FileRecord(rel, st.st_mtime_ns, st.st_size, digest, "ok", symbols)

    def disk_changed(self, paths: Iterable[Path | str]) -> list[Path]:
        """Files or directories changed on disk (watcher events, `didChangeWatchedFiles`).

        Open documents are left alone. A changed `.gitignore` re-walks the workspace. Returns
        the paths whose index entry changed, which are also passed to `on_change`.
        """
        if self._closed:
            return []
        rels: set[str] = set()
        reload = False
        for p in paths:
            rel = self.rel(p)
            if rel is None or rel == "":
                continue
            if posixpath.basename(rel) == ".gitignore" or rel == ".git/info/exclude":
                reload = True
            else:
                rels.add(rel)
        changed: list[str] = []
        with self._index_lock:
            if reload:
                self._matcher.reload()
                before = set(self._resolver_paths())
                self._index_all(None, _never)
                after = set(self._resolver_paths())
                changed.extend(sorted(before ^ after))
            stats = IndexStats()
            todo: list[str] = []
            gone: list[str] = []
            for rel in sorted(rels):
                path = self.root / rel
                if path.is_dir():
                    if self._matcher.is_ignored(rel, True):
                        gone.extend(self._store_paths_under(rel))
                        continue
                    found, _ = walk(
                        self.root, self._matcher, max_file_bytes=self.max_file_bytes, under=rel
                    )
                    todo.extend(found)
                    known = set(self._store_paths_under(rel))
                    gone.extend(sorted(known - set(found)))
                elif path.exists():
                    if self._indexable(rel):
                        todo.append(rel)
                    else:
                        gone.append(rel)
                else:
                    gone.append(rel)
                    gone.extend(self._store_paths_under(rel))
            with self._lock:
                rows = {r: row for r in set(todo) | set(gone) if (row := self._store.file_row(r))}
                open_now = set(self._open)
            todo = [r for r in dict.fromkeys(todo) if r not in open_now]
            changed.extend(self._refresh(todo, rows, stats, force=True))
            gone = [g for g in dict.fromkeys(gone) if g in rows and g not in open_now]
            if gone:
                with self._lock:
                    self._store.write(deletes=gone)
                    for g in gone:
                        self._resolver.remove(g)
                changed.extend(gone)
            self._recover()
        result = [self.root / c for c in dict.fromkeys(changed)]
        if 0 < len(result) <= 5:
            with self._lock:
                for rel in dict.fromkeys(changed):
                    if self._store.file_row(rel) is not None:
                        self._touch_recent(rel)
        if result and self.on_change is not None:
            try:
                self.on_change(result)
            except Exception:
                log.exception("index on_change callback failed")
        return result

    def _resolver_paths(self) -> list[str]:
        with self._lock:
            return self._store.paths()

    def _store_paths_under(self, rel: str) -> list[str]:
        with self._lock:
            return self._store.paths_under(rel)

    # -- watching -------------------------------------------------------------------------

    def start_watching(self) -> None:
        """Follow disk changes with watchdog (inotify, else polling), debounced into batches."""
        with self._lock:
            if self._watcher is not None or self._closed:
                return
            watcher = Watcher(
                self.root,
                self._accept_event,
                self._on_watch_batch,
                quiet=self._debounce,
                poll_interval=self._poll_interval,
                keep_dir=self._keep_dir,
            )
            self._watcher = watcher
        watcher.start()

    @property
    def watch_mode(self) -> str:
        """The observer in use: "native", "polling", or "" when not watching."""
        return self._watcher.mode if self._watcher is not None else ""

    def _keep_dir(self, path: str) -> bool:
        rel = self.rel(path)
        return rel is not None and not self._matcher.is_ignored(rel, True)

    def _accept_event(self, path: str, is_dir: bool) -> bool:
        rel = self.rel(path)
        if rel is None or rel == "":
            return False
        if posixpath.basename(rel) == ".gitignore" or rel == ".git/info/exclude":
            return True
        if self._matcher.is_ignored(rel, is_dir):
            return False
        return is_dir or os.path.splitext(rel)[1].lower() in languages.EXTENSIONS

    def _on_watch_batch(self, paths: list[Path]) -> None:
        if not self._closed:
            self.disk_changed(paths)

    def stop(self) -> None:
        """Stop watching and close the database; the index is unusable afterwards."""
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        with self._index_lock, self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    def stop_watching(self) -> None:
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    # -- open documents -------------------------------------------------------------------

    def _key(self, path: Path | str) -> tuple[str, str | None]:
        rel = self.rel(path)
        if rel:
            return rel, rel
        return os.path.normpath(os.path.abspath(path)), None

    def update_document(self, path: Path | str, text: str, language_id: str | None = None) -> None:
        """The editor's buffer for `path` (didOpen / didChange with the full new text).

        Re-parses incrementally against the previous buffer (the edit is found by diffing),
        and the buffer wins over the disk until `close_document`.
        """
        key, rel = self._key(path)
        source = text.encode("utf-8")
        if len(source) > self.max_file_bytes:  # as on disk: too big to parse on each change
            self.close_document(path)
            return
        with self._lock:
            doc = self._open.get(key)
            spec = self._spec(path, language_id, doc)
            if spec is None:
                return
            if doc is not None and doc.spec is spec:
                if doc.text == text:
                    return
                edit = diff_edit(doc.source, source)
                tree = self._reparse(doc, source, edit)
            else:
                tree = parse(spec, source)
            self._commit(key, rel, spec, text, source, tree, doc)

    def apply_edit(
        self,
        path: Path | str,
        start_byte: int,
        old_end_byte: int,
        new_end_byte: int,
        start_point: tuple[int, int],
        old_end_point: tuple[int, int],
        new_end_point: tuple[int, int],
        new_text_full: str,
    ) -> None:
        """One edit as tree-sitter describes it (UTF-8 bytes, byte-column points) and the new text.

        An edit that does not match the buffer falls back to diffing. The points are recomputed
        from the bytes, so a client's UTF-16 columns cannot corrupt the tree.
        """
        if len(new_text_full.encode("utf-8")) > self.max_file_bytes:
            self.close_document(path)  # not under the lock: it takes the index lock first
            return
        key, rel = self._key(path)
        with self._lock:
            doc = self._open.get(key)
            if doc is None:
                self.update_document(path, new_text_full)
                return
            source = new_text_full.encode("utf-8")
            consistent = (
                0 <= start_byte <= old_end_byte <= len(doc.source)
                and new_end_byte - start_byte
                == len(source) - len(doc.source) + old_end_byte - start_byte
                and doc.source[:start_byte] == source[:start_byte]
                and doc.source[old_end_byte:] == source[new_end_byte:]
            )
            if not consistent:
                self.update_document(path, new_text_full)
                return
            points = (
                _point(doc.source, start_byte),
                _point(doc.source, old_end_byte),
                _point(source, new_end_byte),
            )
            if points != (tuple(start_point), tuple(old_end_point), tuple(new_end_point)):
                log.debug("apply_edit: points %s do not match the bytes; using %s", path, points)
            tree = doc.tree.copy()
            tree.edit(start_byte, old_end_byte, new_end_byte, *points)
            new_tree = parse(doc.spec, source, tree)
            self.parse_count += 1
            self._commit(key, rel, doc.spec, new_text_full, source, new_tree, doc)

    def _spec(
        self, path: Path | str, language_id: str | None, doc: _OpenDoc | None
    ) -> LanguageSpec | None:
        if language_id:
            spec = languages.for_id(language_id)
            if spec is not None:
                return spec
        if doc is not None:
            return doc.spec
        return languages.for_path(str(path))

    def _reparse(self, doc: _OpenDoc, source: bytes, edit: tuple[int, int, int] | None) -> ts.Tree:
        if edit is None:
            return doc.tree
        start, old_end, new_end = edit
        tree = doc.tree.copy()
        tree.edit(
            start,
            old_end,
            new_end,
            _point(doc.source, start),
            _point(doc.source, old_end),
            _point(source, new_end),
        )
        self.parse_count += 1
        return parse(doc.spec, source, tree)

    def _commit(
        self,
        key: str,
        rel: str | None,
        spec: LanguageSpec,
        text: str,
        source: bytes,
        tree: ts.Tree,
        old: _OpenDoc | None,
    ) -> None:
        if old is None:
            self.parse_count += 1
        symbols = extract(spec, tree, source, rel or key)
        indexable = rel is not None and not self._matcher.is_ignored(rel)
        doc = _OpenDoc(
            spec, text, source, tree, symbols, indexable, (old.version + 1) if old else 0
        )
        self._open[key] = doc
        if indexable and rel is not None:
            self._store.write([FileRecord(rel, 0, -1, "open:" + _hash(source), "ok", symbols)])
            self._resolver.add(rel)
        self._touch_recent(key)

    def close_document(self, path: Path | str) -> None:
        """The editor closed `path`: the disk content counts again."""
        key, rel = self._key(path)
        with self._lock:
            doc = self._open.pop(key, None)
        if doc is None or rel is None or not doc.indexed:
            return
        with self._index_lock:
            with self._lock:
                row = self._store.file_row(rel)
            stats = IndexStats()
            if (self.root / rel).is_file() and self._indexable(rel):
                self._refresh([rel], {rel: row} if row else {}, stats, force=True)
            else:
                with self._lock:
                    if rel not in self._open:
                        self._store.write(deletes=[rel])
                        self._resolver.remove(rel)
            self._recover()

    def recover(self) -> None:
        """Refill the database if it was replaced since it was opened (see `needs_reindex`)."""
        with self._index_lock:
            self._recover()

    def parse_tree(self, path: Path | str) -> ts.Tree | None:
        """The current tree of an open document (never mutated afterwards), else None."""
        key, _ = self._key(path)
        with self._lock:
            doc = self._open.get(key)
            return doc.tree if doc is not None else None

    def open_text(self, path: Path | str) -> str | None:
        key, _ = self._key(path)
        with self._lock:
            doc = self._open.get(key)
            return doc.text if doc is not None else None

    def _touch_recent(self, key: str) -> None:
        self._recent[key] = None
        self._recent.move_to_end(key)
        while len(self._recent) > MAX_RECENT:
            self._recent.popitem(last=False)

    # -- queries --------------------------------------------------------------------------

    def definitions(self, name: str) -> list[Definition]:
        """Every indexed definition named exactly `name`."""
        with self._lock:
            return self._store.definitions_named([name])

    def document_symbols(self, path: Path | str) -> list[Definition]:
        """Definitions of one file in source order, flat with `container` (see `nest`)."""
        key, rel = self._key(path)
        with self._lock:
            doc = self._open.get(key)
            if doc is not None:
                return list(doc.symbols.definitions)
            if rel and self._store.file_row(rel) is not None:
                return self._store.definitions_in(rel)
        spec = languages.for_path(str(path))
        file = self.root / rel if rel else Path(key)
        if spec is None or (rel is not None and self.is_ignored(file)):
            return []
        try:
            data = file.read_bytes()
        except OSError:
            return []
        if len(data) > self.max_file_bytes or decode(data) is None:
            return []
        return list(extract(spec, parse(spec, data), data, rel or key).definitions)

    def workspace_symbols(self, query: str, limit: int = 200) -> list[Definition]:
        """Fuzzy (subsequence, case-insensitive) search, exact and prefix matches first."""
        q = query.strip()
        pattern = "%" + "%".join(_like_escape(ch) for ch in q) + "%"
        with self._lock:
            found = self._store.definitions_matching(pattern, max(limit * 20, 2000))
        lower = q.lower()

        def rank(d: Definition) -> tuple[int, int, str, str, int]:
            name = d.name.lower()
            if d.name == q:
                tier = 0
            elif name == lower:
                tier = 1
            elif name.startswith(lower):
                tier = 2
            elif lower in name:
                tier = 3
            else:
                tier = 4
            return (tier, len(d.name), d.name, d.path, d.start_line)

        return sorted(found, key=rank)[:limit]

    def references(self, name: str) -> list[str]:
        """Workspace files (relative) that use `name` (calls, types, ...)."""
        with self._lock:
            return self._store.files_referencing(name)

    def imports(self, path: Path | str) -> list[tuple[ImportSpec, list[str]]]:
        """The imports of a file with the workspace files each resolves to."""
        key, rel = self._key(path)
        with self._lock:
            doc = self._open.get(key)
            if doc is not None:
                specs: list[ImportSpec] | None = list(doc.symbols.imports)
                family = doc.spec.family
            else:
                specs = self._store.imports_of(rel) if rel else None
                spec = languages.for_path(key)
                family = spec.family if spec else ""
        if not specs or rel is None:
            return [(s, []) for s in specs or []]
        return self._resolver.resolve_all(rel, family, specs)

    def files(self) -> list[str]:
        with self._lock:
            return sorted(self._store.paths())

    # -- retrieval ------------------------------------------------------------------------

    def retrieve(
        self, path: Path | str, text: str, offset: int, budget_chars: int
    ) -> list[Snippet]:
        """Repository context for a cursor at `offset` (an index into `text`), best first.

        Never includes the current file nor any ignored file; the packed snippets' texts, paths
        and `_rt.SNIPPET_OVERHEAD` per snippet fit in `budget_chars`.
        """
        if budget_chars <= _rt.SNIPPET_OVERHEAD or len(text) > self.max_file_bytes:
            return []  # a file too big to index is too big to parse for each request
        key, rel = self._key(path)
        with self._lock:
            doc = self._open.get(key)
            spec = self._spec(path, None, doc)
            tree = doc.tree if doc is not None and doc.text == text else None
        if spec is None:
            return []
        source = text.encode("utf-8")
        if tree is None:
            tree = parse(spec, source)
        byte = _rt.cursor_byte(text, offset)
        weights = _rt.identifiers_near(spec, tree, source, byte)
        imports = read_imports(spec, tree.root_node, source)
        resolved = self._resolver.resolve_all(rel, spec.family, imports) if rel else []
        imported: dict[str, None] = {}
        named: dict[str, set[str]] = {}
        for imp, targets in resolved:
            for target in targets:
                imported[target] = None
            for name in imp.names:
                named.setdefault(name, set()).update(targets)
        with self._lock:
            local = self._store.names_in(rel) if rel else set()
        if doc is not None:
            local.update(d.name for d in doc.symbols.definitions)
        names = {n: w for n, w in weights.items() if n not in local}
        word = _rt.word_before(text, offset)
        with self._lock:
            defs = self._store.definitions_named(list(names))
            if len(word) >= 3 and word not in local:
                for d in self._store.definitions_matching(_like_escape(word) + "%", 20):
                    names.setdefault(d.name, 0.8)
                    defs.append(d)
            counts = self._store.name_counts(list(names))
        here_dir = posixpath.dirname(rel) if rel else ""
        imported_set = set(imported)
        by_name: dict[str, list[tuple[float, Definition]]] = {}
        seen: set[tuple[str, int, str]] = set()
        for d in defs:
            if d.path == rel or (d.path, d.start_line, d.name) in seen:
                continue
            if self._matcher.is_ignored(d.path):
                continue
            seen.add((d.path, d.start_line, d.name))
            score = _rt.score_definition(
                d,
                names.get(d.name, 0.0),
                counts.get(d.name, 1),
                imported=imported_set,
                named_from=named.get(d.name, set()),
                here_dir=here_dir,
            )
            by_name.setdefault(d.name, []).append((score, d))
        picked: list[tuple[float, Definition]] = []
        for entries in by_name.values():
            preferred = [e for e in entries if e[1].path in imported_set]
            entries = preferred or entries
            entries.sort(key=lambda e: (-e[0], e[1].path, e[1].start_line))
            picked.extend(entries[: _rt.MAX_DEFINITIONS_PER_NAME])
        picked.sort(key=lambda e: (-e[0], e[1].path, e[1].start_line))
        picked = picked[:16]
        candidates: list[_rt.Candidate] = []
        file_defs: dict[str, list[Definition]] = {}

        def defs_of(p: str) -> list[Definition]:
            if p not in file_defs:
                with self._lock:
                    file_defs[p] = self._store.definitions_in(p)
            return file_defs[p]

        chosen_names: dict[str, set[str]] = {}
        for score, d in picked:
            dspec = languages.for_path(d.path) or spec
            members = (
                [
                    m
                    for m in defs_of(d.path)
                    if m.container == d.name
                    and d.start_line <= m.start_line <= d.end_line
                    and _rt.is_public_member(m)
                ][: _rt.MAX_MEMBERS]
                if d.source is None
                else []
            )
            full, compact = _rt.render_definition(dspec, d, members)
            candidates.append(
                _rt.Candidate(d.path, full, score, "definition", d.start_line, d.end_line, compact)
            )
            chosen_names.setdefault(d.path, set()).add(d.name)
        for i, target in enumerate(list(imported)[:4]):
            tspec = languages.for_path(target)
            if tspec is None or self._matcher.is_ignored(target):
                continue
            summary = _rt.module_summary(tspec, defs_of(target), chosen_names.get(target, set()))
            if summary:
                candidates.append(
                    _rt.Candidate(target, summary, 0.3 / (1 + 0.5 * i), "module", 0, 0)
                )
        candidates.extend(self._similar(key, rel, text, byte, candidates))
        return _rt.pack(candidates, budget_chars)

    def _similar(
        self,
        key: str,
        rel: str | None,
        text: str,
        byte: int,
        chosen: list[_rt.Candidate],
    ) -> list[_rt.Candidate]:
        before = text.encode("utf-8")[:byte].decode("utf-8", "replace")
        lines = before.split("\n")
        query = _rt.tokens("\n".join(lines[-_rt.SIMILAR_QUERY_LINES :]))
        with self._lock:
            recent = [k for k in reversed(self._recent) if k != key]
            open_texts = {k: self._open[k].text for k in recent if k in self._open}
        docs = []
        for k in recent:
            krel = self.rel(k)
            if not krel or krel == rel or self._matcher.is_ignored(krel):
                continue
            body = open_texts.get(k)
            if body is None:
                try:
                    data = (self.root / krel).read_bytes()
                except OSError:
                    continue
                if len(data) > self.max_file_bytes:
                    continue
                body = decode(data)
                if body is None:
                    continue
            docs.append((krel, self._windows.get(krel, body)))
        out = []
        for cand in _rt.similar(query, docs):
            overlaps = any(
                c.path == cand.path
                and c.start_line <= cand.end_line
                and cand.start_line <= c.end_line
                for c in chosen
                if c.kind == "definition"
            )
            if not overlaps:
                cand.score *= 1.5
                out.append(cand)
        return out


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def nest(defs: Sequence[Definition]) -> list[SymbolNode]:
    """A file's flat definitions as an outline tree: members under their container."""
    roots: list[SymbolNode] = []
    stack: list[SymbolNode] = []
    for d in sorted(defs, key=lambda d: (d.start_line, d.start_col, -d.end_line)):
        node = SymbolNode(d, [])
        while stack and not _contains(stack[-1].definition, d):
            stack.pop()
        (stack[-1].children if stack else roots).append(node)
        if d.kind in CONTAINER_KINDS:
            stack.append(node)
    return roots


def _contains(outer: Definition, inner: Definition) -> bool:
    return (outer.start_line, outer.start_col) <= (inner.start_line, inner.start_col) and (
        inner.end_line,
        inner.end_col,
    ) <= (outer.end_line, outer.end_col)


__all__ = ["WorkspaceIndex", "diff_edit", "nest"]
