"""The persistent half of the index: one SQLite file per workspace.

Files are keyed by relative path with mtime, size and a content hash, so a restart re-reads only
what changed. A corrupt database is deleted and rebuilt; a locked one (another process holds it)
is replaced by an in-memory database, with a warning. Not thread-safe on its own: the
`WorkspaceIndex` lock serialises every call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import Definition, FileSymbols, ImportSpec

log = logging.getLogger(__name__)

#: Bump when the schema or what the parser extracts changes: old databases are then rebuilt.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,
    language TEXT,
    imports TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS defs (
    file_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    container TEXT,
    start_line INTEGER NOT NULL,
    start_col INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    end_col INTEGER NOT NULL,
    name_line INTEGER NOT NULL,
    name_col INTEGER NOT NULL,
    name_end_col INTEGER NOT NULL,
    signature TEXT NOT NULL,
    doc TEXT NOT NULL,
    source TEXT
);
CREATE INDEX IF NOT EXISTS defs_name ON defs(name);
CREATE INDEX IF NOT EXISTS defs_file ON defs(file_id);
CREATE TABLE IF NOT EXISTS refs (
    name TEXT NOT NULL,
    file_id INTEGER NOT NULL,
    PRIMARY KEY (name, file_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_file ON refs(file_id);
"""

_DEF_COLUMNS = (
    "f.path, d.name, d.kind, d.container, d.start_line, d.start_col, d.end_line, d.end_col, "
    "d.name_line, d.name_col, d.name_end_col, d.signature, d.doc, d.source"
)


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    mtime_ns: int
    size: int
    hash: str
    status: str


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file to (re)write: `symbols` is None for a file kept only so it is not re-read
    (binary or undecodable, `status` says which)."""

    path: str
    mtime_ns: int
    size: int
    hash: str
    status: str
    symbols: FileSymbols | None


def _encode_imports(imports: Iterable[ImportSpec]) -> str:
    return "\n".join(f"{i.module}\t{','.join(i.names)}\t{i.line}" for i in imports)


def _decode_imports(text: str) -> list[ImportSpec]:
    out = []
    for line in text.split("\n"):
        if not line:
            continue
        module, names, lineno = line.split("\t")
        out.append(ImportSpec(module, tuple(n for n in names.split(",") if n), int(lineno)))
    return out


def _create(conn: sqlite3.Connection) -> None:
    """Create the tables statement by statement (`executescript` would commit first)."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_full(exc: sqlite3.Error) -> bool:
    """The disk is full or refuses writes (SQLITE_FULL, SQLITE_IOERR): rebuilding cannot help."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR) or "disk is full" in str(exc)


class Store:
    def __init__(self, db_path: Path | None, *, busy_timeout: float = 2.0):
        self.db_path = db_path
        self.in_memory = db_path is None
        self._busy_timeout = busy_timeout
        #: Set when the database was replaced after it was opened: everything must be re-read.
        self.lost = False
        self.closed = False
        self.conn = self._open()

    # -- opening --------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.db_path is None:
            return self._memory()
        try:
            return self._open_file(self.db_path)
        except sqlite3.OperationalError as exc:
            if _is_locked(exc):
                log.warning(
                    "index database %s is locked by another process (%s); "
                    "using an in-memory index for this session",
                    self.db_path,
                    exc,
                )
                return self._memory()
            return self._rebuild(exc)
        except sqlite3.DatabaseError as exc:
            return self._rebuild(exc)

    def _rebuild(self, exc: Exception) -> sqlite3.Connection:
        assert self.db_path is not None
        log.warning("index database %s is unreadable (%s); rebuilding it", self.db_path, exc)
        self._delete_files(self.db_path)
        try:
            return self._open_file(self.db_path)
        except sqlite3.Error as again:
            log.warning("cannot recreate %s (%s); using an in-memory index", self.db_path, again)
            return self._memory()

    @staticmethod
    def _delete_files(path: Path) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(str(path) + suffix)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete %s%s: %s", path, suffix, exc)

    def _memory(self) -> sqlite3.Connection:
        self.in_memory = True
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        _create(conn)
        return conn

    def _open_file(self, path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        conn = sqlite3.connect(
            str(path),
            timeout=self._busy_timeout,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("BEGIN IMMEDIATE")
            try:
                if version != SCHEMA_VERSION:
                    if version:
                        log.info("index database %s has schema %s; rebuilding", path, version)
                    for table in ("files", "defs", "refs"):
                        conn.execute(f"DROP TABLE IF EXISTS {table}")
                    _create(conn)
                conn.execute("SELECT count(*) FROM files").fetchone()
                check = conn.execute("PRAGMA quick_check(1)").fetchone()
                if check is None or check[0] != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {check and check[0]}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def _fail(self, exc: sqlite3.Error) -> None:
        """A database that broke after opening: start over (in memory if it is locked)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        self.lost = True
        if (
            self.db_path is not None
            and not self.in_memory
            and not (_is_locked(exc) or _is_full(exc))
        ):
            self.conn = self._rebuild(exc)
        else:
            log.warning("index database failed (%s); using an in-memory index", exc)
            self.conn = self._memory()

    # -- files ----------------------------------------------------------------------------

    def file_rows(self) -> dict[str, FileRow]:
        rows = self._query("SELECT path, id, mtime_ns, size, hash, status FROM files")
        return {r[0]: FileRow(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def file_row(self, path: str) -> FileRow | None:
        rows = self._query(
            "SELECT id, mtime_ns, size, hash, status FROM files WHERE path = ?", (path,)
        )
        return FileRow(*rows[0]) if rows else None

    def paths(self) -> list[str]:
        return [r[0] for r in self._query("SELECT path FROM files WHERE status = 'ok'")]

    def imports_of(self, path: str) -> list[ImportSpec] | None:
        rows = self._query("SELECT imports FROM files WHERE path = ? AND status = 'ok'", (path,))
        return _decode_imports(rows[0][0]) if rows else None

    def write(
        self,
        records: Sequence[FileRecord] = (),
        touches: Sequence[tuple[str, int, int]] = (),
        deletes: Collection[str] = (),
    ) -> None:
        """Apply one batch in one transaction: new contents, new stat only, removals."""
        if self.closed or not (records or touches or deletes):
            return
        try:
            self._write(records, touches, deletes)
        except sqlite3.Error as exc:
            self._fail(exc)
            self._write(records, touches, deletes)

    def _write(
        self,
        records: Sequence[FileRecord],
        touches: Sequence[tuple[str, int, int]],
        deletes: Collection[str],
    ) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if deletes:
                ids = [
                    (r[0],)
                    for path in deletes
                    for r in conn.execute("SELECT id FROM files WHERE path = ?", (path,))
                ]
                conn.executemany("DELETE FROM defs WHERE file_id = ?", ids)
                conn.executemany("DELETE FROM refs WHERE file_id = ?", ids)
                conn.executemany("DELETE FROM files WHERE id = ?", ids)
            if touches:
                conn.executemany(
                    "UPDATE files SET mtime_ns = ?, size = ? WHERE path = ?",
                    [(m, s, p) for p, m, s in touches],
                )
            def_rows: list[tuple[object, ...]] = []
            ref_rows: list[tuple[str, int]] = []
            for rec in records:
                symbols = rec.symbols
                row = conn.execute(
                    "INSERT INTO files(path, mtime_ns, size, hash, status, language, imports) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                    "mtime_ns = excluded.mtime_ns, size = excluded.size, hash = excluded.hash, "
                    "status = excluded.status, language = excluded.language, "
                    "imports = excluded.imports RETURNING id",
                    (
                        rec.path,
                        rec.mtime_ns,
                        rec.size,
                        rec.hash,
                        rec.status,
                        symbols.language if symbols else None,
                        _encode_imports(symbols.imports) if symbols else "",
                    ),
                ).fetchone()
                file_id = int(row[0])
                conn.execute("DELETE FROM defs WHERE file_id = ?", (file_id,))
                conn.execute("DELETE FROM refs WHERE file_id = ?", (file_id,))
                if symbols is None:
                    continue
                def_rows.extend(
                    (
                        file_id,
                        d.name,
                        d.kind,
                        d.container,
                        d.start_line,
                        d.start_col,
                        d.end_line,
                        d.end_col,
                        d.name_line,
                        d.name_col,
                        d.name_end_col,
                        d.signature,
                        d.doc,
                        d.source,
                    )
                    for d in symbols.definitions
                )
                ref_rows.extend((name, file_id) for name in symbols.references)
            if def_rows:
                conn.executemany(
                    "INSERT INTO defs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", def_rows
                )
            if ref_rows:
                conn.executemany("INSERT OR IGNORE INTO refs VALUES (?, ?)", ref_rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def paths_under(self, prefix: str) -> list[str]:
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        rows = self._query("SELECT path FROM files WHERE path LIKE ? ESCAPE '\\'", (like,))
        return [r[0] for r in rows]

    # -- definitions ----------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        if self.closed:
            return []
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if _is_locked(exc):
                log.debug("index read skipped: %s", exc)
                return []
            self._fail(exc)
            return []
        except sqlite3.DatabaseError as exc:
            self._fail(exc)
            return []

    @staticmethod
    def _definition(row: Any) -> Definition:
        return Definition(
            path=row[0],
            name=row[1],
            kind=row[2],
            container=row[3],
            start_line=row[4],
            start_col=row[5],
            end_line=row[6],
            end_col=row[7],
            name_line=row[8],
            name_col=row[9],
            name_end_col=row[10],
            signature=row[11],
            doc=row[12],
            source=row[13],
        )

    def definitions_named(self, names: Collection[str]) -> list[Definition]:
        out: list[Definition] = []
        names = list(names)
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT {_DEF_COLUMNS} FROM defs d JOIN files f ON f.id = d.file_id "
                f"WHERE d.name IN ({marks}) ORDER BY f.path, d.start_line",
                chunk,
            )
            out.extend(map(self._definition, rows))
        return out

    def definitions_in(self, path: str) -> list[Definition]:
        rows = self._query(
            f"SELECT {_DEF_COLUMNS} FROM defs d JOIN files f ON f.id = d.file_id "
            "WHERE f.path = ? ORDER BY d.start_line, d.start_col",
            (path,),
        )
        return [self._definition(r) for r in rows]

    def names_in(self, path: str) -> set[str]:
        rows = self._query(
            "SELECT DISTINCT d.name FROM defs d JOIN files f ON f.id = d.file_id WHERE f.path = ?",
            (path,),
        )
        return {r[0] for r in rows}

    def definitions_matching(self, like: str, limit: int) -> list[Definition]:
        """Definitions whose name matches a LIKE pattern (ASCII case-insensitive)."""
        rows = self._query(
            f"SELECT {_DEF_COLUMNS} FROM defs d JOIN files f ON f.id = d.file_id "
            "WHERE d.name LIKE ? ESCAPE '\\' LIMIT ?",
            (like, limit),
        )
        return [self._definition(r) for r in rows]

    def name_counts(self, names: Collection[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        names = list(names)
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for name, count in self._query(
                f"SELECT name, count(*) FROM defs WHERE name IN ({marks}) GROUP BY name", chunk
            ):
                out[name] = count
        return out

    def files_referencing(self, name: str) -> list[str]:
        rows = self._query(
            "SELECT f.path FROM refs r JOIN files f ON f.id = r.file_id WHERE r.name = ? "
            "ORDER BY f.path",
            (name,),
        )
        return [r[0] for r in rows]

    def counts(self) -> tuple[int, int]:
        rows = self._query(
            "SELECT (SELECT count(*) FROM files WHERE status = 'ok'), (SELECT count(*) FROM defs)"
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
