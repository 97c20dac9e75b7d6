"""The `hushcode` command and the installed package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import lsp

ROOT = Path(__file__).resolve().parents[2]


def hushcode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lsp", *args], capture_output=True, text=True, timeout=60
    )


def test_version():
    out = hushcode("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"hushcode {lsp.__version__}"


def test_tcp_refuses_a_non_loopback_address():
    out = hushcode("serve", "--tcp", "0.0.0.0:1")
    assert out.returncode == 2
    assert "not a loopback address" in out.stderr


def test_the_wheel_ships_the_prompts_and_the_model_registry(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("hushcode-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    prompts = {p.relative_to(ROOT).as_posix() for p in (ROOT / "prompts").rglob("*") if p.is_file()}
    assert prompts, "no prompts in the repository"
    assert {f"lsp/{p}" for p in prompts} <= names
    assert "lsp/model/registry.json" in names
