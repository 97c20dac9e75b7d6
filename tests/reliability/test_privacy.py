"""Privacy: the whole server (indexing, completions, a code action, the watcher, a restart) runs
with every non-loopback connection blocked and recorded, makes none, sends no telemetry, keeps
document text out of its logs, and keeps its cache user-only.

One guarded run serves all but the guard's self-check. The server process has three layers
around it: a Python-level guard (`guard/sitecustomize.py`: `socket.connect` and friends, name
lookups), `strace -f` (native code too: llama.cpp's connect(2) would show), and an empty network
namespace (`unshare -n`: nothing could leave even if both missed it). It runs with umask 000, so
user-only permissions cannot come from the umask.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import EXAMPLES
from tests.reliability.conftest import GUARD, command_works, serve
from tests.reliability.flows import ACTION_SETTINGS, Outcome, use_everything

pytestmark = [pytest.mark.model, pytest.mark.slow]

HAS_STRACE = shutil.which("strace") is not None and command_works(
    "strace", "-f", "-o", "/dev/null", "true"
)
HAS_NETNS = command_works("unshare", "-n", "true")
NO_NETNS = "`unshare -n` is not permitted here (it needs root or user namespaces)"


@dataclass
class Run:
    marker: str
    outcome: Outcome
    guard_log: str
    strace_log: str | None
    stderr: str
    log_file: Path
    logged: list[str]
    shown: list[str]
    telemetry: list[object]
    home: Path


def _guard_env(log: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(GUARD), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PYTHONPATH": path,
        "HUSHCODE_NET_GUARD_LOG": str(log),
        "HUSHCODE_NET_GUARD_CANARY": "1",
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guarded(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> AsyncIterator[Run]:
    base = tmp_path_factory.mktemp("privacy")
    root = base / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("__pycache__"))
    home = base / "home"
    home.mkdir(mode=0o755)  # made by someone else, too open: the server must close it
    guard_log, strace_log, log_file = base / "guard.log", base / "strace.log", base / "hushcode.log"
    wrap = ["unshare", "-n"] if HAS_NETNS else []
    wrap += ["sh", "-c", 'umask 000 && exec "$@"', "sh"]
    if HAS_STRACE:
        wrap += ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg"]
        wrap += ["-e", "signal=none", "-o", str(strace_log)]
    marker = f"hushmark{uuid.uuid4().hex[:12]}"
    settings = {**ACTION_SETTINGS, "logFile": str(log_file)}  # logLevel: the default (info)
    async with serve(
        root, home=home, model=model_path, settings=settings, env=_guard_env(guard_log), wrap=wrap
    ) as s:
        outcome = await use_everything(s, marker)
        logged, shown, telemetry = s.logged(), s.shown(), list(s.telemetry)
    yield Run(
        marker=marker,
        outcome=outcome,
        guard_log=guard_log.read_text() if guard_log.exists() else "",
        strace_log=strace_log.read_text() if HAS_STRACE else None,
        stderr=s.stderr(),
        log_file=log_file,
        logged=logged,
        shown=shown,
        telemetry=telemetry,
        home=home,
    )


_INET = re.compile(r"sa_family=(AF_\w+)(.*?)(?:\}|$)")
_ADDR = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def _foreign_connections(strace: str) -> list[str]:
    """strace lines with a socket address that is neither loopback nor local (Unix, netlink)."""
    import ipaddress

    bad = []
    for line in strace.splitlines():
        for family, rest in _INET.findall(line):
            if family in ("AF_UNIX", "AF_NETLINK", "AF_UNSPEC"):
                continue
            found = _ADDR.search(rest)
            address = (found.group(1) or found.group(2)) if found else ""
            loopback = address and ipaddress.ip_address(address).is_loopback
            if family in ("AF_INET", "AF_INET6") and loopback:
                continue
            bad.append(line)
    return bad


async def test_no_connection_but_loopback_or_unix_is_attempted(guarded: Run):
    assert guarded.outcome.completions[0] and guarded.outcome.symbols_found_after_disk_change
    armed = [line for line in guarded.guard_log.splitlines() if line.startswith("armed")]
    assert any("serve" in line for line in armed), f"the guard was not loaded: {guarded.guard_log}"
    blocked = [line for line in guarded.guard_log.splitlines() if line.startswith("blocked")]
    assert not blocked, guarded.guard_log
    if guarded.strace_log is None:
        pytest.skip("strace is not available: only the Python-level guard was checked")
    assert 'inet_addr("127.0.0.1")' in guarded.strace_log, "strace did not see the server"
    assert not _foreign_connections(guarded.strace_log), _foreign_connections(guarded.strace_log)


async def test_no_telemetry(guarded: Run):
    assert guarded.telemetry == []  # no `telemetry/event` to the editor
    assert not [line for line in guarded.guard_log.splitlines() if line.startswith("blocked")]


async def test_logs_never_contain_document_text(guarded: Run):
    marker = guarded.marker
    assert guarded.log_file.is_file(), "the log file was not written"
    log_text = guarded.log_file.read_text()
    assert "ready (" in log_text or "indexed" in log_text, log_text[:2000]
    for where, text in [
        ("stderr", guarded.stderr),
        ("log file", log_text),
        ("window/logMessage", "\n".join(guarded.logged)),
        ("window/showMessage", "\n".join(guarded.shown)),
    ]:
        assert marker not in text, f"document text in the {where}:\n" + "\n".join(
            line for line in text.splitlines() if marker in line
        )


def _modes(home: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(home.stat().st_mode)}
    for path in home.rglob("*"):
        out[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return out


async def test_the_cache_directory_and_the_index_are_user_only(guarded: Run):
    modes = _modes(guarded.home)
    index = [p for p in modes if p.startswith("index/") and ".sqlite" in p]
    assert index, f"no index database under {guarded.home}: {sorted(modes)}"
    for rel, mode in modes.items():
        path = guarded.home / rel
        if path.is_dir():
            assert mode == 0o700, f"{rel}: {oct(mode)}"
        else:
            assert mode & 0o077 == 0, f"{rel}: {oct(mode)}"
    log_mode = stat.S_IMODE(guarded.log_file.stat().st_mode)
    assert log_mode & 0o077 == 0, f"log file {oct(log_mode)}"


@pytest.mark.skipif(not HAS_NETNS, reason=NO_NETNS)
def test_the_guard_blocks_and_records_in_a_netns(tmp_path: Path):
    """The guard itself, proven inside an empty network namespace (nothing can leave it)."""
    log = tmp_path / "guard.log"
    probe = (
        "import socket\n"
        "for target in [('192.0.2.1', 9), ('2001:db8::1', 9, 0, 0)]:\n"
        "    fam = socket.AF_INET6 if ':' in target[0] else socket.AF_INET\n"
        "    try:\n"
        "        socket.socket(fam).connect(target)\n"
        "    except PermissionError as e:\n"
        "        print('blocked', e)\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 443)\n"
        "except PermissionError:\n"
        "    print('lookup blocked')\n"
        "a, b = socket.socketpair()\n"
        "print('unix ok')\n"
    )
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", probe],
        env={**os.environ, **_guard_env(log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.count("blocked") == 3 and "unix ok" in result.stdout, result
    assert log.read_text().count("blocked pid=") == 3


@pytest.mark.skipif(not HAS_NETNS, reason=NO_NETNS)
async def test_the_whole_server_works_without_a_network(guarded: Run):
    """The run above had no network at all: indexing, completions, the action, the watcher."""
    assert guarded.outcome.completions[0]
    assert guarded.outcome.symbols_found_after_disk_change
    assert guarded.outcome.action_edit is not None, "the code action produced no edit"
