"""`WorkspaceIndex` on a copy of the fixture workspace: indexing, resolution, retrieval,
exclusions, persistence, open documents and incremental re-parsing."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from tree_sitter import Tree

from lsp.index import Snippet, WorkspaceIndex, nest
from lsp.index import workspace as workspace_mod
from lsp.index.languages import LanguageSpec, for_path
from lsp.index.parse import extract, parse
from lsp.index.retrieve import SNIPPET_OVERHEAD

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "index_ws"
FIXTURE_FILES = 22

#: Files the index must never show: each defines a name containing "leak".
IGNORED = {
    "ignored_dir/module.py": "def leak_from_ignored_dir():\n    pass\n",
    "pyapp/secret_tokens.py": "def leak_secret_token():\n    pass\n",
    "web/node_modules/leftpad/index.js": "export function leakLeftPad(s) { return s; }\n",
    "build/generated.py": "def leak_build_output():\n    pass\n",
    ".venv/lib/site.py": "def leak_virtualenv():\n    pass\n",
    "web/generated/api.ts": "export function leakGeneratedApi(): void {}\n",
    "web/src/schema.gen.ts": "export function leakGenSchema(): void {}\n",
}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(FIXTURE, root)
    for rel, text in IGNORED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    # Near misses that must stay: a negated pattern, and `*.log` does not match `debug.log.py`.
    (root / "web/src/keep.gen.ts").write_text("export function keptGenerated(): void {}\n")
    (root / "debug.log.py").write_text("def kept_not_a_log():\n    pass\n")
    (root / "pyapp/blob.py").write_bytes(b"def binary_function():\n    pass\n\x00\x01\x02")
    (root / "pyapp/latin.py").write_bytes(b"def latin_function():\n    return '\xe9'\n")
    (root / "pyapp/huge.py").write_text("def huge_function():\n    pass\n" + "#" * 70_000 + "\n")
    return root


def make(
    ws: Path, tmp_path: Path, on_change: Callable[[list[Path]], None] | None = None
) -> WorkspaceIndex:
    db = tmp_path / "cache" / "index.sqlite"
    return WorkspaceIndex(ws, db, max_file_bytes=64 * 1024, on_change=on_change)


def budget_used(snippets: list[Snippet]) -> int:
    return sum(len(s.text) + len(s.path) + SNIPPET_OVERHEAD for s in snippets)


def test_index_all_finds_definitions_and_locations(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    seen: list[tuple[int, int]] = []
    stats = idx.index_all(progress=lambda done, total: seen.append((done, total)))
    # fixture + keep.gen.ts + debug.log.py + the binary/undecodable files (kept as skipped)
    assert stats.files_seen == FIXTURE_FILES + 4
    assert stats.parsed == FIXTURE_FILES + 2
    assert stats.skipped == 3  # blob.py (NUL), latin.py (not UTF-8), huge.py (over the cap)
    assert seen[-1] == (stats.files_seen, stats.files_seen)
    (d,) = idx.definitions("reconcile_ledger_entries")
    assert (d.path, d.kind, d.name_line, d.name_col) == ("pyapp/util/money.py", "function", 3, 4)
    locations = {
        "scaleVector": "web/src/math.ts",
        "formatPrice": "web/src/components/index.js",
        "EuclideanDistance": "goapp/geom/geom.go",
        "area_of_triangle": "rsapp/src/shapes.rs",
        "cm_to_m": "rsapp/src/shapes/units.rs",
        "capitalizeWord": "javaapp/src/com/example/util/Strings.java",
        "IntVec": "csrc/vec.h",
        "keptGenerated": "web/src/keep.gen.ts",
        "kept_not_a_log": "debug.log.py",
    }
    for name, path in locations.items():
        assert [x.path for x in idx.definitions(name)] == [path], name
    assert {x.path for x in idx.definitions("vec_dot_product")} == {"csrc/vec.h", "csrc/vec.c"}
    for skipped in ("binary_function", "latin_function", "huge_function"):
        assert idx.definitions(skipped) == []
    assert idx.references("reconcile_ledger_entries") == ["pyapp/service.py"]
    idx.stop()


def test_ignored_files_never_appear(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()
    files = idx.files()
    assert not [f for f in files if f in IGNORED]
    assert not [d for d in idx.workspace_symbols("leak", limit=1000)]
    assert not [d for d in idx.workspace_symbols("", limit=10_000) if "leak" in d.name.lower()]
    # A call site naming every ignored function finds none of them, even with the ignored
    # files open in the editor (an open buffer of an ignored file is not indexed).
    for rel, text in IGNORED.items():
        idx.update_document(ws / rel, text)
    caller = ws / "pyapp/caller.py"
    text = (
        "from .secret_tokens import leak_secret_token\n\n"
        "def run():\n"
        "    leak_from_ignored_dir()\n    leak_secret_token()\n    leakLeftPad('x')\n"
        "    leak_build_output()\n    leakGeneratedApi()\n    leakGenSchema()\n"
        "    leak_virtualenv()\n    \n"
    )
    snippets = idx.retrieve(caller, text, len(text) - 1, 4000)
    assert all("leak" not in s.text.lower() for s in snippets), snippets
    assert not [d for d in idx.workspace_symbols("leak", limit=1000)]
    assert all(idx.definitions(name) == [] for name in ("leak_secret_token", "leakLeftPad"))
    idx.stop()


def test_imports_resolve_to_workspace_files(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()

    def targets(rel: str) -> dict[str, list[str]]:
        return {spec.module: files for spec, files in idx.imports(ws / rel)}

    assert targets("pyapp/service.py") == {
        "pyapp.util.money": ["pyapp/util/money.py"],
        ".": ["pyapp/core.py", "pyapp/__init__.py"],
        ".util": ["pyapp/util/money.py", "pyapp/util/__init__.py"],
    }
    assert targets("pyapp/__init__.py") == {".core": ["pyapp/core.py"]}
    assert targets("web/src/index.ts") == {
        "./math": ["web/src/math.ts"],
        "./components": ["web/src/components/index.js"],
    }
    assert targets("web/src/widget.tsx") == {
        "./components/index.js": ["web/src/components/index.js"]
    }
    assert targets("goapp/main.go") == {"fmt": [], "example.com/goapp/geom": ["goapp/geom/geom.go"]}
    assert targets("rsapp/src/main.rs") == {
        "mod:shapes": ["rsapp/src/shapes.rs"],
        "crate::shapes::area_of_triangle": ["rsapp/src/shapes.rs"],
        "crate::shapes::Triangle": ["rsapp/src/shapes.rs"],
    }
    assert targets("rsapp/src/shapes.rs") == {"mod:units": ["rsapp/src/shapes/units.rs"]}
    assert targets("rsapp/src/shapes/units.rs") == {"super::Triangle": ["rsapp/src/shapes.rs"]}
    assert targets("csrc/main.c") == {"<stdio.h>": [], "vec.h": ["csrc/vec.h"]}
    assert targets("cppapp/shapes.cpp") == {"shapes.hpp": ["cppapp/shapes.hpp"]}
    assert targets("javaapp/src/com/example/Greeter.java") == {
        "com.example.util.Strings": ["javaapp/src/com/example/util/Strings.java"]
    }
    idx.stop()


@pytest.mark.parametrize(
    ("rel", "call", "expected"),
    [
        (
            "pyapp/service.py",
            "reconcile_ledger_entries(engine",
            "def reconcile_ledger_entries(ledger: list[int], *, tolerance_cents: int = 5) -> bool:",
        ),
        (
            "web/src/index.ts",
            "scaleVector(v, 2",
            "export function scaleVector(v: Vec, factor: Scalar): Vec",
        ),
        ("web/src/app.js", "formatPrice(cents", "export function formatPrice(cents, currency)"),
        (
            "goapp/main.go",
            "EuclideanDistance(geom",
            "func EuclideanDistance(a, b Point) float64",
        ),
        (
            "rsapp/src/main.rs",
            "area_of_triangle(&t",
            "pub fn area_of_triangle(t: &Triangle) -> f64",
        ),
        (
            "csrc/main.c",
            "vec_dot_product(&a",
            "int vec_dot_product(const IntVec *a, const IntVec *b, int n);",
        ),
        (
            "javaapp/src/com/example/Greeter.java",
            "capitalizeWord(name",
            "public static String capitalizeWord(String word)",
        ),
    ],
)
def test_retrieval_brings_the_imported_signature_to_a_call_site(
    ws: Path, tmp_path: Path, rel: str, call: str, expected: str
) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()
    text = (ws / rel).read_text()
    offset = text.index(call) + call.index("(") + 1
    snippets = idx.retrieve(ws / rel, text, offset, 1200)
    assert snippets, rel
    assert expected in snippets[0].text
    assert snippets[0].kind == "definition"
    assert all(s.path != rel for s in snippets)  # never the current file
    assert budget_used(snippets) <= 1200
    assert [s.score for s in snippets] == sorted((s.score for s in snippets), reverse=True)
    idx.stop()


def test_retrieval_for_an_unsaved_call_site_and_a_tight_budget(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()
    path = ws / "pyapp/report.py"  # not on disk: a new buffer
    text = (
        "from pyapp.util.money import reconcile_ledger_entries\n"
        "from .core import LedgerEngine\n\n"
        "def summary(engine: LedgerEngine) -> str:\n"
        "    balanced = reconcile_ledger_entries(\n"
    )
    full = idx.retrieve(path, text, len(text), 4000)
    kinds = {(s.path, s.kind) for s in full}
    assert ("pyapp/util/money.py", "definition") in kinds
    assert ("pyapp/core.py", "definition") in kinds
    tight = idx.retrieve(path, text, len(text), 160)
    assert budget_used(tight) <= 160
    assert tight and "def reconcile_ledger_entries(" in tight[0].text
    assert idx.retrieve(path, text, len(text), 0) == []
    # The word being typed finds definitions by prefix.
    typing = "import pyapp\n\ndef f():\n    return recon"
    assert "reconcile_ledger_entries" in idx.retrieve(path, typing, len(typing), 2000)[0].text
    idx.stop()


def test_retrieval_adds_similar_windows_of_recent_files(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()
    other = ws / "pyapp/audit.py"
    other_text = (
        "def audit_trail(ledger_rows, auditor_name):\n"
        "    for audited_row in ledger_rows:\n"
        "        auditor_name.stamp(audited_row, reason='quarterly_review')\n"
        "    return ledger_rows\n"
    )
    other.write_text(other_text)
    idx.update_document(other, other_text)
    idx.close_document(other)  # stays among the recent files
    here = ws / "pyapp/new.py"
    text = "def review(ledger_rows, auditor_name):\n    for audited_row in ledger_rows:\n        "
    snippets = idx.retrieve(here, text, len(text), 2000)
    similar = [s for s in snippets if s.kind == "similar"]
    assert similar and similar[0].path == "pyapp/audit.py"
    assert "quarterly_review" in similar[0].text
    idx.stop()


def test_symbols_for_outline_and_workspace_search(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()
    outline = nest(idx.document_symbols(ws / "pyapp/core.py"))
    assert [(n.definition.name, [c.definition.name for c in n.children]) for n in outline] == [
        ("DEFAULT_CURRENCY", []),
        ("LedgerEngine", ["__init__", "post_entry"]),
        ("start_engine", []),
    ]
    hpp = nest(idx.document_symbols(ws / "cppapp/shapes.hpp"))
    assert hpp[0].definition.name == "geo"
    assert [c.definition.name for c in hpp[0].children] == ["Circle"]
    names = [d.name for d in idx.workspace_symbols("vec")]
    assert names[0] == "Vec"  # the exact name (ignoring case) first
    assert "scaleVector" in names and "vec_dot_product" in names
    assert [d.name for d in idx.workspace_symbols("rcle")][:1] == ["Circle"]  # substring
    assert [d.name for d in idx.workspace_symbols("rledg")] == ["reconcile_ledger_entries"]
    assert len(idx.workspace_symbols("", limit=5)) == 5
    idx.stop()


def test_restart_reparses_only_changed_files(ws: Path, tmp_path: Path) -> None:
    first = make(ws, tmp_path)
    cold = first.index_all()
    assert first.parse_count == cold.parsed == FIXTURE_FILES + 2
    first.stop()

    core = ws / "pyapp/core.py"
    core.write_text(core.read_text() + "\n\ndef added_after_restart() -> None:\n    pass\n")
    money = ws / "pyapp/util/money.py"
    st = money.stat()
    os.utime(money, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, same text
    (ws / "goapp/main.go").unlink()

    second = make(ws, tmp_path)
    assert second.definitions("reconcile_ledger_entries")  # served before any walk
    warm = second.index_all()
    assert second.parse_count == 1 == warm.parsed
    assert (warm.touched, warm.removed) == (1, 1)
    assert warm.unchanged == cold.files_seen - 3
    assert second.definitions("added_after_restart")[0].path == "pyapp/core.py"
    assert second.definitions("main") and all(
        d.path != "goapp/main.go" for d in second.definitions("main")
    )
    third = make(ws, tmp_path)
    assert third.index_all().parsed == 0 and third.parse_count == 0
    second.stop()
    third.stop()


def test_database_is_private_and_a_corrupt_one_is_rebuilt(
    ws: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "cache" / "index.sqlite"
    idx = make(ws, tmp_path)
    idx.index_all()
    idx.stop()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="lsp.index"):
        again = make(ws, tmp_path)
    assert "rebuilding" in caplog.text
    assert not again.in_memory
    stats = again.index_all()
    assert stats.parsed == FIXTURE_FILES + 2
    assert again.definitions("scaleVector")
    again.stop()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM defs").fetchone()[0] > 0


def test_a_locked_database_falls_back_to_memory(
    ws: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "cache" / "index.sqlite"
    make(ws, tmp_path).stop()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, logger="lsp.index"):
            idx = WorkspaceIndex(ws, db, db_busy_timeout=0.1)
        assert idx.in_memory
        assert "locked" in caplog.text
        idx.index_all()
        assert idx.definitions("scaleVector")
        idx.stop()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_open_documents_win_over_disk_until_closed(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()
    core = ws / "pyapp/core.py"
    disk = core.read_text()
    idx.update_document(core, disk.replace("def start_engine(", "def launch_engine("))
    assert idx.definitions("launch_engine") and not idx.definitions("start_engine")
    core.write_text(disk.replace("def start_engine(", "def boot_engine("))
    idx.disk_changed([core])
    assert idx.definitions("launch_engine") and not idx.definitions("boot_engine")
    assert idx.parse_tree(core) is not None
    idx.close_document(core)
    assert idx.parse_tree(core) is None
    assert idx.definitions("boot_engine") and not idx.definitions("launch_engine")
    idx.stop()


def test_disk_changed_without_a_watcher(ws: Path, tmp_path: Path) -> None:
    changes: list[list[Path]] = []
    idx = make(ws, tmp_path, on_change=changes.append)
    idx.index_all()
    new = ws / "goapp/geom/area.go"
    new.write_text(
        "package geom\n\n// Area of a rectangle.\n"
        "func RectArea(w, h float64) float64 {\n\treturn w * h\n}\n"
    )
    idx.disk_changed([new])
    assert idx.definitions("RectArea")[0].doc == "Area of a rectangle."
    main_go = ws / "goapp/main.go"
    assert "goapp/geom/area.go" in {f for _, fs in idx.imports(main_go) for f in fs}
    shutil.rmtree(ws / "goapp/geom")
    idx.disk_changed([ws / "goapp/geom"])
    assert idx.definitions("RectArea") == [] and idx.definitions("EuclideanDistance") == []
    assert changes and changes[0] == [new]
    idx.stop()


EDITS = [
    (
        "insert",
        "def reconcile_ledger_entries(",
        "def helper_one(x: int) -> int:\n    return x\n\n\n",
    ),
    ("replace", "tolerance_cents: int = 5", "tolerance_cents: int = 7, *, strict: bool = False"),
    ("insert", "    total = 0\n", "    # ünïcödé 😀 comment\n"),
    ("replace", "def helper_one(x: int) -> int:", "def helper_two(x: int, y: int) -> int:"),
    ("delete", "    for entry in ledger:\n        total += entry\n", ""),
    ("insert", '"""Money helpers."""\n', "\nclass Unclosed(:\n"),  # a syntax error
    ("replace", "\nclass Unclosed(:\n", "\nclass Closed:\n    RATE = 3\n"),
    ("append", "", "\n\nMAX_ENTRIES = 10_000\n"),
]


def _apply(text: str, kind: str, anchor: str, new: str) -> str:
    if kind == "append":
        return text + new
    i = text.index(anchor)
    if kind == "insert":
        return text[:i] + new + text[i:]
    return text[:i] + new + text[i + len(anchor) :]


def test_incremental_updates_equal_a_fresh_index(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    real_parse = workspace_mod.parse

    def spy(spec: LanguageSpec, source: bytes, old_tree: Tree | None = None) -> Tree:
        calls.append(old_tree is not None)
        return real_parse(spec, source, old_tree)

    monkeypatch.setattr(workspace_mod, "parse", spy)
    idx = make(ws, tmp_path)
    idx.index_all()
    money = ws / "pyapp/util/money.py"
    text = money.read_text()
    idx.update_document(money, text)
    spec = for_path(money)
    assert spec is not None
    calls.clear()
    for step, (kind, anchor, new) in enumerate(EDITS):
        old = text
        text = _apply(text, kind, anchor, new)
        if step % 2:
            idx.update_document(money, text)  # full text: the edit is found by diffing
        else:
            start = (
                len(old[: old.index(anchor)].encode()) if kind != "append" else len(old.encode())
            )
            old_end = start + len(anchor.encode()) if kind in ("replace", "delete") else start
            new_end = start + len(new.encode())

            def point(data: bytes, byte: int) -> tuple[int, int]:
                return data.count(b"\n", 0, byte), byte - (data.rfind(b"\n", 0, byte) + 1)

            ob, nb = old.encode(), text.encode()
            idx.apply_edit(
                money,
                start,
                old_end,
                new_end,
                point(ob, start),
                point(ob, old_end),
                point(nb, new_end),
                text,
            )
        tree = idx.parse_tree(money)
        assert tree is not None
        fresh = parse(spec, text.encode())
        assert str(tree.root_node) == str(fresh.root_node), f"tree differs after edit {step}"
        assert idx.document_symbols(money) == list(
            extract(spec, fresh, text.encode(), "pyapp/util/money.py").definitions
        ), f"symbols differ after edit {step}"
    assert calls and all(calls), "open documents must be re-parsed incrementally"
    names = {d.name for d in idx.definitions("helper_two")} | {
        d.name for d in idx.definitions("MAX_ENTRIES")
    }
    assert names == {"helper_two", "MAX_ENTRIES"}
    assert idx.definitions("helper_one") == []
    incremental = idx.document_symbols(money)
    stored = [d for d in idx.workspace_symbols("", limit=10_000) if d.path == "pyapp/util/money.py"]

    money.write_text(text)
    fresh_index = WorkspaceIndex(ws, None, max_file_bytes=64 * 1024)
    fresh_index.index_all()
    assert fresh_index.document_symbols(money) == incremental
    assert sorted(stored, key=lambda d: d.start_line) == incremental
    fresh_index.stop()
    idx.stop()


def test_index_all_can_be_cancelled_and_resumed(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    calls = iter(range(1000))
    stats = idx.index_all(cancel=lambda: next(calls) >= 5)
    assert stats.cancelled and stats.parsed < FIXTURE_FILES
    rest = idx.index_all()
    assert not rest.cancelled and stats.parsed + rest.parsed == FIXTURE_FILES + 2
    idx.stop()


def test_a_stopped_index_answers_empty(ws: Path, tmp_path: Path) -> None:
    idx = make(ws, tmp_path)
    idx.index_all()
    idx.stop()
    assert idx.definitions("scaleVector") == []
    assert idx.disk_changed([ws / "pyapp/core.py"]) == []
    idx.stop()
