"""`hushcode eval examples/ --limit 10 --json` with the real model: sane numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _command() -> list[str]:
    """`python -m lsp eval` once the subcommand is wired into lsp/cli.py, else the module itself."""
    from lsp.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    wired = "eval" in getattr(sub, "choices", {})
    return [sys.executable, "-m", "lsp", "eval"] if wired else [sys.executable, "-m", "lsp.eval"]


@pytest.mark.timeout(300)
def test_eval_on_the_examples_prints_sane_json(model_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HUSHCODE_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [*_command(), str(EXAMPLES), "--limit", "10", "--json", "--model", str(model_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=280,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["holes"] == 10
    assert len(result["cases"]) == 10
    assert result["files"] >= 3
    assert {"python", "go", "typescript"} & set(result["by_language"])
    assert len(result["by_language"]) >= 2, result["by_language"]
    assert 0.0 <= result["exact_match"] <= 1.0
    assert 0.0 <= result["edit_similarity"] <= 1.0
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] < 300_000
    for case in result["cases"]:
        assert case["expected"].strip()
        assert case["total_ms"] > 0
        assert case["prompt_tokens"] > 0, case  # the model really ran
        assert case["source"] in ("model", "empty", "cache"), case
    # an exact match really is the removed line
    for case in result["cases"]:
        if case["exact"]:
            assert case["completion"].strip().splitlines()[0].strip() == case["expected"].strip()
    assert "10/10" in out.stderr  # the progress bar


def test_eval_refuses_a_missing_directory(tmp_path: Path) -> None:
    import argparse

    from lsp.eval import add_eval_parser, run_eval_command

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", str(tmp_path / "nowhere"), "--limit", "3"])
    assert run_eval_command(args) == 2


def test_mining_is_deterministic_and_covers_every_language() -> None:
    from lsp.eval.core import mine_holes

    fixtures = ROOT / "tests" / "fixtures" / "index_ws"
    first = mine_holes(fixtures, limit=200, per_file=50)
    again = mine_holes(fixtures, limit=200, per_file=50)
    assert first == again
    langs = {h.language for h in first}
    assert {"python", "javascript", "typescript", "go", "rust", "java", "c"} <= langs, langs
    for hole in first:
        # the hole: the statement gone, its indentation kept, the cursor right after it
        line_start = hole.text.rfind("\n", 0, hole.offset) + 1
        assert not hole.text[line_start : hole.offset].strip()
        line_end = hole.text.find("\n", hole.offset)
        assert hole.text[hole.offset : line_end if line_end >= 0 else None] == ""
        original = (fixtures / hole.path).read_text()
        assert hole.expected in original.splitlines()[hole.line]
