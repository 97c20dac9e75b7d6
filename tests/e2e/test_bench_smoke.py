"""The benchmark harness end to end on a handful of cases, so that it cannot rot.

`python -m bench.run --smoke`: 2-3 HumanEval cases (single-line and multi-line), 1 repository
case (click, downloaded once into ~/.cache/hushcode-bench), 1 latency hole, the index probe. The
peer (llama-server) runs only when its binary is already cached (`make bench-peer`); the test
says so when it is skipped. The HumanEval files live outside the repository (../shared/bench-data
or HUSHCODE_BENCH_DATA); without them section 1 must say so and the others must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench` is a top-level directory, not an installed package

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_bench_smoke_writes_a_report_with_every_section(model_path: Path, tmp_path: Path) -> None:
    from bench import humaneval
    from bench.peer import cached_binary
    from bench.run import LLAMA_VERSION

    data = humaneval.data_present()  # outside the repository: ../shared/bench-data
    if not data:
        print(f"\nbench smoke: no HumanEval data in {humaneval.data_dir()}: section 1 must say so")
    peer = cached_binary(LLAMA_VERSION)
    if peer is None:
        print("\nbench smoke: peer skipped (no cached llama-server; `make bench-peer` builds it)")
    out = tmp_path / "results"
    env = {**os.environ, "BENCH_MODEL": str(model_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=480,  # the run caps itself at 360 s; the peer starts before its clock
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "latest.json").read_text())
    md = (out / "latest.md").read_text()
    for number, section in enumerate(("humaneval", "repo", "latency", "index"), 1):
        assert section in result and f"## {number}." in md
        if section == "humaneval" and not data:
            assert "HumanEval infilling data not found" in result[section]["error"]
            assert "HumanEval infilling data not found" in md
            continue
        assert "error" not in result[section], result[section]

    if data:
        he = result["humaneval"]
        assert all(he["self_check"].values()), he["self_check"]  # the sandbox works, no network
        assert he["summary"]["single"]["n"] >= 1 and he["summary"]["multi"]["n"] >= 1
        for case in he["cases"]:
            assert case["hushcode"]["metrics"]["prompt_tokens"] > 0
            assert isinstance(case["hushcode"]["passed"], bool)

    rp = result["repo"]
    assert rp["summary"]["n"] >= 1, rp
    case = rp["cases"][0]
    for system in ("hushcode_index", "hushcode_none", "hushcode_oracle"):
        assert case[system]["metrics"]["prompt_tokens"] > 0, case[system]
    assert case["hushcode_oracle"]["metrics"]["context_files"] == 1
    assert case["hushcode_none"]["metrics"]["context_files"] == 0

    lat = result["latency"]["summary"]
    assert lat["cold"]["ms"]["n"] >= 1 and lat["warm"]["ms"]["n"] >= 1
    ix = result["index"]
    assert ix["cold"]["files"] > 0 and ix["cold"]["definitions"] > 0
    assert ix["warm"]["parsed"] == 0  # a warm restart re-parses nothing

    if peer is not None:
        assert case["peer"] is not None and case["peer_oracle"] is not None
        assert "hushcode/peer" in md
    else:
        assert case["peer"] is None
        assert "peer skipped" in md
    if data:
        assert (result["humaneval"]["cases"][0]["peer"] is None) == (peer is None)
