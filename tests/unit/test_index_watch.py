"""Disk changes reach the index through watchdog on the real filesystem, with no editor."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lsp.index import WorkspaceIndex
from lsp.index import watch as watch_mod

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "index_ws"
DEADLINE = 2.0


class Batches:
    def __init__(self) -> None:
        self.calls: list[list[Path]] = []
        self.event = threading.Event()

    def __call__(self, paths: list[Path]) -> None:
        self.calls.append(paths)
        self.event.set()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(FIXTURE, root)
    (root / "pyapp" / "gen").mkdir()
    (root / "node_modules").mkdir()
    (root / "ignored_dir").mkdir()
    return root


@pytest.fixture
def batches() -> Batches:
    return Batches()


@pytest.fixture
def index(ws: Path, tmp_path: Path, batches: Batches) -> Iterator[WorkspaceIndex]:
    idx = WorkspaceIndex(ws, tmp_path / "db" / "index.sqlite", on_change=batches)
    idx.index_all()
    idx.start_watching()
    yield idx
    idx.stop()


def within(check: Callable[[], bool], seconds: float = DEADLINE) -> float:
    """Seconds until `check()` held; fails after `seconds`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            pytest.fail(f"not reflected within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - start


def test_create_change_delete_on_disk_within_two_seconds(ws: Path, index: WorkspaceIndex) -> None:
    assert index.watch_mode == "native"
    path = ws / "goapp" / "geom" / "taxicab.go"
    path.write_text("package geom\n\nfunc ManhattanDistance(a, b Point) float64 {\n\treturn 0\n}\n")
    within(lambda: bool(index.definitions("ManhattanDistance")))
    path.write_text("package geom\n\nfunc ChebyshevDistance(a, b Point) float64 {\n\treturn 0\n}\n")
    within(lambda: bool(index.definitions("ChebyshevDistance")))
    assert index.definitions("ManhattanDistance") == []
    path.unlink()
    within(lambda: not index.definitions("ChebyshevDistance"))
    # Moves and renames follow the file.
    src = ws / "pyapp" / "core.py"
    src.rename(ws / "pyapp" / "engine.py")
    within(lambda: [d.path for d in index.definitions("LedgerEngine")] == ["pyapp/engine.py"])
    # A new directory with files in it, and a removed directory.
    pkg = ws / "pyapp" / "extra"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def extra_helper():\n    pass\n")
    within(lambda: bool(index.definitions("extra_helper")))
    shutil.rmtree(pkg)
    within(lambda: not index.definitions("extra_helper"))


def test_a_thousand_file_checkout_is_one_batch(
    ws: Path, index: WorkspaceIndex, batches: Batches
) -> None:
    gen = ws / "pyapp" / "gen"
    for i in range(1000):
        (gen / f"mod_{i:04d}.py").write_text(f"def generated_{i:04d}(x):\n    return x + {i}\n")
    within(lambda: bool(batches.calls), seconds=10)
    time.sleep(0.5)  # anything late would arrive as a second batch
    assert len(batches.calls) == 1
    assert len(batches.calls[0]) == 1000
    assert index.definitions("generated_0999")[0].path == "pyapp/gen/mod_0999.py"


def test_events_for_ignored_paths_do_not_count(
    ws: Path, index: WorkspaceIndex, batches: Batches
) -> None:
    (ws / "node_modules" / "index.js").write_text("export function vendored() {}\n")
    (ws / "ignored_dir" / "x.py").write_text("def ignored_by_gitignore():\n    pass\n")
    (ws / "notes.md").write_text("not code\n")
    time.sleep(0.6)
    assert batches.calls == []
    assert index.definitions("vendored") == [] and index.definitions("ignored_by_gitignore") == []


def test_a_changed_gitignore_drops_and_restores_files(ws: Path, index: WorkspaceIndex) -> None:
    gitignore = ws / ".gitignore"
    original = gitignore.read_text()
    gitignore.write_text(original + "goapp/\n")
    within(lambda: not index.definitions("EuclideanDistance"))
    gitignore.write_text(original)
    within(lambda: bool(index.definitions("EuclideanDistance")))


def test_polling_takes_over_when_inotify_fails(
    ws: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_inotify() -> watch_mod.BaseObserver:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watch_mod, "native_observer", no_inotify)
    idx = WorkspaceIndex(ws, tmp_path / "db.sqlite", poll_interval=0.3)
    idx.index_all()
    with caplog.at_level(logging.WARNING, logger="lsp.index"):
        idx.start_watching()
    try:
        assert idx.watch_mode == "polling"
        assert "polling" in caplog.text
        (ws / "pyapp" / "polled.py").write_text("def found_by_polling():\n    pass\n")
        within(lambda: bool(idx.definitions("found_by_polling")))
        (ws / "pyapp" / "polled.py").unlink()
        within(lambda: not idx.definitions("found_by_polling"))
    finally:
        idx.stop()
