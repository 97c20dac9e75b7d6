"""`model: "auto"` (the default setting) through the real server: which model it loads, and why.

Each test gets its own hushcode home whose models folder links to the installed GGUF files (with
their verification stamps), so what is "installed" and what was "measured" is the test's to say.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from lsp.model import autoselect
from lsp.model.manager import installed_path
from tests.conftest import EXAMPLES, start_session

FIB = "def fib(n):\n    if n < 2:\n        return n\n    return \n"


def _link(home: Path, name: str, *, required: bool = True) -> None:
    real = installed_path(name)
    if real is None:
        if not required:
            return
        pytest.skip(f"{name} is not installed (`make model-large` installs the 1.5B)")
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / real.name).symlink_to(real)
    stamp = real.with_name(real.name + ".verified")
    shutil.copy(stamp, models / stamp.name)


def _measured(home: Path, warm_ms: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUSHCODE_HOME", str(home))
    result = autoselect.BenchResult(fingerprint=autoselect.fingerprint(), measured_at=1.0)
    result.models[autoselect.ACCURATE] = autoselect.ModelMeasurement(
        autoselect.ACCURATE, warm_p50_ms=warm_ms, requests=12
    )
    autoselect.save_result(result)


async def _loaded(home: Path) -> dict[str, Any]:
    # the suite's generous time budget: the 1.5B on a loaded machine must not be cut short
    settings = {"model": {"name": "auto"}, "completion": {"timeBudgetMs": 30000}}
    async with start_session(EXAMPLES, settings=settings, home=home) as s:
        for _ in range(600):
            status = await s.command("hushcode.status")
            if status["model"]["state"] in ("ready", "failed"):
                break
            await asyncio.sleep(0.2)
        assert status["model"]["state"] == "ready", status
        uri = s.open("scratch/fib.py", FIB)
        status["completion"] = await s.inline(uri, 3, 11)
        return status


async def test_auto_is_the_default_and_loads_the_fast_model_when_the_other_is_unmeasured(
    tmp_path: Path, model_path: Path
) -> None:
    from lsp.config import Settings

    assert Settings().model.name == "auto"
    home = tmp_path / "home"
    _link(home, autoselect.FAST)
    _link(home, autoselect.ACCURATE, required=False)  # installed or not, never measured here
    status = await _loaded(home)
    assert status["model"]["setting"] == "auto"
    assert status["model"]["name"] == autoselect.FAST  # what editors show: the real name
    assert status["completion"] and "fib(" in status["completion"]


@pytest.mark.parametrize(
    ("over_budget_ms", "expected"),
    [(-1, autoselect.ACCURATE), (1, autoselect.FAST)],
    ids=["accurate-when-in-budget", "fast-when-too-slow-here"],
)
async def test_auto_follows_this_machines_measurement_of_the_accurate_model(
    tmp_path: Path,
    model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    over_budget_ms: float,
    expected: str,
) -> None:
    home = tmp_path / "home"
    _link(home, autoselect.FAST)
    _link(home, autoselect.ACCURATE)
    _measured(home, autoselect.LATENCY_BUDGET_S * 1000 + over_budget_ms, monkeypatch)
    status = await _loaded(home)
    assert status["model"]["name"] == expected
    assert status["completion"] and "fib(" in status["completion"]
