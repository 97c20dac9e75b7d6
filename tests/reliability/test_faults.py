"""Faults around the server: a model that will not load, files vanishing mid-index, a corrupt or
locked index database, a full disk, and no inotify. Each through the real server over stdio."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.reliability.conftest import FIB, FIB_AT, QUICK, Live, command_works

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _db_path(home: Path, root: Path) -> Path:
    """Where the server keeps the index of `root` (lsp/server.py: start_index)."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return home / "index" / f"{digest}.sqlite"


def _generated(root: Path, count: int, per_file: int = 3, prefix: str = "gen") -> None:
    for i in range(count):
        pkg = root / f"pkg_{i % 10}"
        pkg.mkdir(parents=True, exist_ok=True)
        body = "".join(
            f"def {prefix}_{i:05d}_{j}(value):\n"
            f'    """Generated helper {i}/{j}, with a docstring long enough to take room."""\n'
            f"    return value + {j}\n\n\n"
            for j in range(per_file)
        )
        (pkg / f"mod_{i:05d}.py").write_text(body)


# -- the model ------------------------------------------------------------------------------------


def _broken_model(kind: str, where: Path, model: Path) -> Path:
    path = where / "models" / "model.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        with model.open("rb") as src:
            path.write_bytes(src.read(1 << 20))
    elif kind == "not gguf":
        path.write_bytes(b"PK\x03\x04 a zip, not a model " * 200)
    return path  # "missing": nothing there


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("missing", "not found"),
        ("truncated", "truncated or corrupt"),
        ("not gguf", "not a GGUF"),
    ],
)
async def test_a_model_that_fails_to_load_is_shown_and_restart_recovers(
    start: Any, workspace: Path, tmp_path: Path, model_path: Path, kind: str, why: str
):
    path = _broken_model(kind, tmp_path, model_path)
    async with start(workspace, model=path, settings=QUICK) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "failed", status
        assert why in status["model"]["error"], status
        errors = [m for m in s.client.messages if m.type == types.MessageType.Error]
        assert errors and why in errors[0].message, s.shown()
        # completions come back empty, without touching a model
        uri = s.open("scratch/while_broken.py", FIB)
        assert await s.inline_at(uri, *FIB_AT) is None
        assert (await s.metrics())["last"]["source"] == "unavailable"
        # the user installs the model and restarts
        path.unlink(missing_ok=True)
        path.symlink_to(model_path)
        status = await s.answer(s.command("hushcode.restart"))
        assert status["model"]["state"] == "ready", status
        await s.still_serves()


async def test_a_model_without_fim_tokens_warns_and_continues_plain_text(
    start: Any, workspace: Path, smollm2: Path
):
    async with start(workspace, model=smollm2, settings=QUICK) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "ready", status
        assert status["model"]["family"] == "plain"
        warnings = [m for m in s.client.messages if m.type == types.MessageType.Warning]
        assert any("fill-in-the-middle" in m.message for m in warnings), s.shown()
        uri = s.open("scratch/plain.py", "def add(a, b):\n    return a")
        text = await s.inline_at(uri, 1, 12)
        assert text and "\n" not in text, text  # one line, continuing the prefix
        assert (await s.metrics())["last"]["source"] == "model"


# -- the index ------------------------------------------------------------------------------------


async def test_files_deleted_or_renamed_while_indexing(start: Any, tmp_path: Path):
    root = tmp_path / "ws"
    _generated(root, 3000, per_file=2)
    (root / "keep.py").write_text("def kept_function():\n    pass\n")
    async with start(root, settings=QUICK) as s:

        def reporting() -> bool:
            return any(
                "hushcode-index" in str(token)
                and any(isinstance(r, types.WorkDoneProgressReport) for r in reports)
                for token, reports in s.client.progress_reports.items()
            )

        await s.wait_for(reporting, "indexing started")
        ended_early = _index_ended(s)
        for i in range(0, 1000):  # delete a third
            (root / f"pkg_{i % 10}" / f"mod_{i:05d}.py").unlink()
        for i in range(1000, 1500):  # rename a sixth
            src = root / f"pkg_{i % 10}" / f"mod_{i:05d}.py"
            src.rename(src.with_name(f"renamed_{i:05d}.py"))
        shutil.rmtree(root / "pkg_9")  # and a whole directory
        await s.wait_indexed()
        assert not ended_early, "indexing ended before the files changed: make the workspace larger"

        async def consistent() -> bool:
            gone = await s.symbols("gen_00042_0")
            moved = await s.symbols("gen_01234_1")
            in_dir = await s.symbols("gen_02009_0")  # was in pkg_9
            return (
                not [x for x in gone if x.name == "gen_00042_0"]
                and any(x.location.uri.endswith("renamed_01234.py") for x in moved)
                and not [x for x in in_dir if x.name == "gen_02009_0"]
            )

        await s.wait_for(consistent, "the index caught up with the deletes and renames")
        assert [x.name for x in await s.symbols("gen_02500_0")][:1] == ["gen_02500_0"]
        assert await s.symbols("kept_function")
        assert not [m for m in s.client.messages if m.type == types.MessageType.Error]
        await s.still_serves()


def _index_ended(s: Live) -> bool:
    return any(
        "hushcode-index" in str(token) and isinstance(r[-1], types.WorkDoneProgressEnd)
        for token, r in s.client.progress_reports.items()
        if r
    )


async def test_a_corrupt_index_database_is_rebuilt(start: Any, workspace: Path, home: Path):
    db = _db_path(home, workspace)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))  # a header, then garbage
    async with start(workspace, settings=QUICK) as s:
        await s.wait_indexed()
        assert await s.symbols("word_count"), "nothing indexed after the rebuild"
        assert "rebuilding" in "\n".join(s.logged()) + s.stderr()
        await s.still_serves()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM defs").fetchone()[0] > 0


async def test_a_locked_index_database_falls_back_to_memory(
    start: Any, workspace: Path, home: Path
):
    db = _db_path(home, workspace)
    db.parent.mkdir(parents=True)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE squatter(x)")
    holder.execute("BEGIN EXCLUSIVE")  # another process holds it, and keeps holding it
    try:
        async with start(workspace, settings=QUICK) as s:
            await s.wait_indexed()
            assert await s.symbols("word_count"), "no in-memory index"
            assert "in-memory" in "\n".join(s.logged()) + s.stderr()
            await s.still_serves()
    finally:
        holder.rollback()
        holder.close()


async def test_the_index_database_locked_mid_session_keeps_the_index_whole(
    start: Any, workspace: Path, home: Path
):
    async with start(workspace, settings=QUICK) as s:
        await s.wait_indexed()
        assert await s.symbols("word_count")
        holder = sqlite3.connect(_db_path(home, workspace), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            (workspace / "python" / "while_locked.py").write_text(
                "def written_while_locked():\n    pass\n"
            )

            async def whole() -> bool:  # the new file, and the rest refilled (not at once)
                return bool(await s.symbols("written_while_locked")) and bool(
                    await s.symbols("word_count")
                )

            await s.wait_for(whole, "the index refilled after the database was lost")
        finally:
            holder.rollback()
            holder.close()
        await s.still_serves()


HAS_MOUNT_NS = command_works("unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt")


@pytest.fixture
def big_workspace(workspace: Path, home: Path) -> Path:
    _generated(workspace / "generated", 600, per_file=4)
    home.mkdir(mode=0o700)  # the mount point
    return workspace


@pytest.mark.skipif(
    not HAS_MOUNT_NS, reason="no private mount namespace for a tiny tmpfs (needs root)"
)
async def test_a_full_disk_while_writing_the_index(start: Any, big_workspace: Path):
    """HUSHCODE_HOME on a 192 KB tmpfs, private to the server: the index outgrows it."""
    root = big_workspace
    wrap = [
        "unshare", "-m", "sh", "-c",
        'mount -t tmpfs -o size=192k,mode=0700 tmpfs "$HUSHCODE_HOME" && exec "$@"', "sh",
    ]  # fmt: skip
    async with start(root, settings=QUICK, wrap=wrap) as s:
        await s.wait_indexed()
        said = "\n".join(s.logged()) + s.stderr()
        assert "full" in said, said[-3000:]
        await s.still_serves()
        assert await s.symbols("word_count"), "the index answers nothing after the disk filled"
        (root / "python" / "after_full.py").write_text("def after_the_disk_filled():\n    pass\n")

        async def seen() -> bool:
            return bool(await s.symbols("after_the_disk_filled"))

        await s.wait_for(seen, "changes after the disk filled reach the index")
        await s.still_serves()


HAS_USERNS = command_works("unshare", "-U", "-r", "true")


@pytest.mark.skipif(not HAS_USERNS, reason="no user namespaces: cannot limit inotify privately")
async def test_without_inotify_the_index_polls_with_a_warning(start: Any, workspace: Path):
    """No inotify instance left (many windows, other tools): the index polls, and says so.

    The limit is per user namespace: lowered for this server alone, not for the machine.
    (`max_user_watches` is not enforced per namespace, so only the instance limit is tested.)
    """
    limit = 'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"'
    async with start(
        workspace, settings=QUICK, wrap=["unshare", "-U", "-r", "sh", "-c", limit, "sh"]
    ) as s:
        await s.wait_indexed()
        warned = [m for m in s.client.log_messages if m.type == types.MessageType.Warning]
        assert any("polling" in m.message and "inotify" in m.message for m in warned), s.logged()
        (workspace / "python" / "polled.py").write_text("def found_by_polling():\n    pass\n")

        async def seen() -> bool:
            return bool(await s.symbols("found_by_polling"))

        await s.wait_for(seen, "a file written to disk reached the index by polling", timeout=60)
        await s.still_serves()
