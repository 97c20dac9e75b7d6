"""One model for many windows: real `hushcode serve` processes sharing the real model through the
daemon (one load), fair scheduling between two windows, and the daemon leaving after the last."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from lsp.model import daemon as d
from lsp.model.backend import ModelError

pytestmark = [pytest.mark.model, pytest.mark.slow]

FIB = "def fib(n):\n    if n < 2:\n        return n\n    return \n\n\nprint(fib(10))\n"
WALK = (
    "import os\n\n\n"
    "def list_python_files(root):\n"
    '    """Return the paths of all .py files under root, recursively."""\n'
    "    \n"
)
DAEMON = {"backend": "daemon", "daemonIdleSeconds": 1}


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sessions' HUSHCODE_HOME (see conftest), also for this process's daemon look-ups."""
    path = tmp_path / "home"
    monkeypatch.setenv("HUSHCODE_HOME", str(path))
    return path


async def test_two_windows_share_one_model_and_the_daemon_leaves_after_the_last(session, home):
    async with session(settings={"model": DAEMON}) as a, session(settings={"model": DAEMON}) as b:
        sa, sb = await asyncio.gather(a.wait_model(), b.wait_model())
        assert sa["model"]["state"] == sb["model"]["state"] == "ready", (sa, sb)
        sockets = d._sockets()
        assert len(sockets) == 1, sockets
        status = d.query(sockets[0])
        assert status["loads"] == 1 and status["clients"] == 2, status
        pid = status["pid"]
        # user-only: the socket 0600, its directory 0700
        assert stat.S_IMODE(os.stat(sockets[0]).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(sockets[0].parent).st_mode) == 0o700
        log = next(d.daemon_dir().glob("*.log")).read_text()
        assert log.count("serving") == 1, log  # two windows started at once: one daemon

        ua, ub = a.open("scratch/fib.py", FIB), b.open("scratch/walk.py", WALK)
        ra, rb = await asyncio.gather(a.inline(ua, 3, 11), b.inline(ub, 5, 4))
        assert ra is not None and "fib(" in ra, ra
        assert rb is not None and rb.strip(), rb
        status = d.query(sockets[0])
        assert status["loads"] == 1 and status["steps"] > 0, status
        # each window has its own KV sequence
        assert sorted(s["clients"] for s in status["slots"])[-2:] == [1, 1], status
        ma = (await a.metrics())["last"]
        assert ma["source"] == "model" and ma["generated_tokens"] > 0, ma
    deadline = time.monotonic() + 15
    while running(pid) or sockets[0].exists():
        assert time.monotonic() < deadline, "the daemon did not exit after the last window"
        await asyncio.sleep(0.1)


def test_windows_are_served_in_turn_and_completions_before_warmups(model_path, home):
    """Direct clients: two windows generating at once advance token by token in turn, and a
    window's completion overtakes another window's long warm-up."""
    args = {"name": "qwen", "n_ctx": 4096, "n_threads": 0, "slots": 2, "idle_seconds": 1}
    a, b = d.DaemonModel(model_path, **args), d.DaemonModel(model_path, **args)
    try:
        assert d.query(a.socket)["loads"] == 1
        times: dict[str, list[float]] = {"a": [], "b": []}

        def run(model: d.DaemonModel, key: str, prompt: str) -> None:
            def seen(text: str) -> None:
                times[key].append(time.monotonic())

            model.generate(model.tokenize(prompt), max_tokens=12, stop_check=seen)

        threads = [
            threading.Thread(target=run, args=(a, "a", "# numbers from 1 to 100:\n# 1, 2,")),
            threading.Thread(target=run, args=(b, "b", "# letters of the alphabet:\n# a, b,")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(times["a"]) >= 6 and len(times["b"]) >= 6, times
        # interleaved: each started before the other finished
        assert times["a"][0] < times["b"][-1] and times["b"][0] < times["a"][-1], times

        long_prompt = a.tokenize("x = 1\n" * 400)  # ~1600 tokens: 25 steps of 64
        warmup: list[str] = []
        finished = threading.Event()

        def warm() -> None:
            warmup.append(a.evaluate(long_prompt, finished.is_set).stop_reason)

        warming = threading.Thread(target=warm)
        warming.start()
        time.sleep(0.3)
        gen = b.generate(b.tokenize("def add(a, b):\n    return"), max_tokens=3)
        finished.set()  # the warm-up, still running, is cancelled now
        warming.join(60)
        assert gen.text.strip(), gen
        assert warmup == ["cancelled"], "the warm-up ended before the completion overtook it"

        # The daemon going away: a clear error, then the next request starts a new one.
        old = a.daemon_pid
        d.query(a.socket, "stop")
        deadline = time.monotonic() + 10
        while running(old):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        tokens = [87, 284]  # "x =": tokenizing would already reconnect
        with pytest.raises(ModelError, match=r"daemon went away.*the next request starts it"):
            a.generate(tokens, max_tokens=2)
        assert a.generate(tokens, max_tokens=2).stats.generated_tokens > 0
        assert a.daemon_pid != old and d.query(a.socket)["loads"] == 1
    finally:
        a.close()
        b.close()
