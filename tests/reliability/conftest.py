"""Real `hushcode serve` processes for the reliability suite.

Like `tests/conftest.py::session`, plus what these tests need: the server's stderr captured, a
command prefix (`unshare`, `strace`, `sh -c 'umask ...'`), extra environment (the network guard),
and raw JSON-RPC frames for what a client library refuses to send (negative positions, wrong
types, broken framing).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.conftest import EXAMPLES, Session

HERE = Path(__file__).resolve().parent
GUARD = HERE / "guard"
SERVER = [sys.executable, "-m", "lsp", "serve"]
HANG = 120.0
"""Seconds after which an unanswered request counts as a hang (not a speed limit)."""

FIB = "def fib(n):\n    if n < 2:\n        return n\n    return \n"
FIB_AT = (3, 11)
QUICK: dict[str, Any] = {
    "completion": {
        "warmup": False,
        "maxTokens": 16,
        "maxBlockTokens": 32,
        "maxPromptTokens": 320,
        "contextTokens": 96,
    }
}
"""Small prompts and short answers: these tests need a served completion, not a good one."""


class Live(Session):
    """A session whose process, stderr and raw stream the test can reach."""

    def __init__(self, client: LanguageClient, root: Path, stderr: list[str]) -> None:
        super().__init__(client, root)
        self.stderr_lines = stderr
        self.capabilities: types.ServerCapabilities | None = None
        self.telemetry: list[Any] = []
        self.applied: list[types.ApplyWorkspaceEditParams] = []
        self._scratch = 0

    # -- the process ----------------------------------------------------------------------------

    @property
    def process(self) -> asyncio.subprocess.Process:
        proc = self.client._server
        assert proc is not None
        return proc

    def alive(self) -> bool:
        return self.process.returncode is None

    def rss_mb(self) -> float:
        """Resident memory of the server process (the last process of a wrapper chain)."""
        pid = _leaf_pid(self.process.pid)
        status = Path(f"/proc/{pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def shown(self) -> list[str]:
        return [m.message for m in self.client.messages]

    def logged(self) -> list[str]:
        return [m.message for m in self.client.log_messages]

    # -- requests -------------------------------------------------------------------------------

    async def answer(self, awaitable: Any, timeout: float = HANG) -> Any:
        """The answer to a request; a hang fails the test instead of blocking it."""
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            pytest.fail(f"no answer within {timeout:.0f} s: the server hangs")

    async def inline_at(self, uri: str, line: int, character: int) -> str | None:
        return await self.answer(self.inline(uri, line, character))

    async def still_serves(self) -> str:
        """A normal completion on a fresh scratch document: the server is alive and useful."""
        assert self.alive(), f"the server exited:\n{self.stderr()[-4000:]}"
        await self.wait_model(timeout=HANG)
        self._scratch += 1
        uri = self.open(f"scratch/alive_{self._scratch}.py", FIB)
        text = await self.inline_at(uri, *FIB_AT)
        if not text:
            last = (await self.metrics())["last"]
            pytest.fail(f"no completion: {last}\n{self.stderr()[-3000:]}")
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        return text

    def frame(self, body: bytes | str, *, header: bytes | None = None) -> None:
        """Write bytes to the server's stdin as they are: a framed body, or anything at all."""
        data = body.encode() if isinstance(body, str) else body
        if header is None:
            header = f"Content-Length: {len(data)}\r\n\r\n".encode()
        writer = self.client.protocol.writer
        assert writer is not None
        writer.write(header + data)

    def raw_notify(self, method: str, params: Any) -> None:
        self.frame(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    async def raw_request(self, method: str, params: Any, timeout: float = HANG) -> Any:
        """Send a request exactly as given; returns the result or raises the error response."""
        msg_id = f"raw-{uuid.uuid4()}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.client.protocol._request_futures[msg_id] = future  # type: ignore[assignment]
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not ...:
            message["params"] = params
        self.frame(json.dumps(message))
        return await self.answer(future, timeout)

    async def wait_for(self, check: Callable[[], Any], what: str, timeout: float = HANG) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout:.0f} s\n{self.stderr()[-3000:]}")
            await asyncio.sleep(0.1)

    async def wait_indexed(self, timeout: float = HANG) -> None:
        """Until the indexing `$/progress` has ended."""

        def ended() -> bool:
            return any(
                "hushcode-index" in str(token) and isinstance(r[-1], types.WorkDoneProgressEnd)
                for token, r in self.client.progress_reports.items()
                if r
            )

        await self.wait_for(ended, "indexing finished", timeout)

    async def symbols(self, query: str) -> list[types.SymbolInformation]:
        result = await self.answer(
            self.client.workspace_symbol_async(types.WorkspaceSymbolParams(query=query))
        )
        return [s for s in result or [] if isinstance(s, types.SymbolInformation)]


def _leaf_pid(pid: int) -> int:
    """Follow single-child chains (strace -f, unshare --fork) down to the server itself."""
    for _ in range(5):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return pid
        if len(children) != 1:
            return pid
        pid = int(children[0])
    return pid


async def _collect(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        text = line.decode("utf-8", "replace")
        lines.append(text)
        sys.stderr.write(text)


@asynccontextmanager
async def serve(
    root: Path,
    *,
    home: Path,
    model: Path | str,
    settings: dict[str, Any] | None = None,
    capabilities: str | types.ClientCapabilities = "visual_studio_code",
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
    init_options: Any = ...,
    configuration: dict[str, Any] | None = None,
) -> AsyncIterator[Live]:
    """A real server on `root`; `wrap` is a command prefix, `init_options` replaces the settings,
    `configuration` is what the editor answers to `workspace/configuration` for "hushcode"."""
    server_env = {**os.environ, "HUSHCODE_HOME": str(home), **(env or {})}
    config = ClientServerConfig(server_command=[*wrap, *SERVER], server_env=server_env)
    client = await config.start()
    assert isinstance(client, LanguageClient)
    lines: list[str] = []
    if client._stderr_forwarder is not None:
        client._stderr_forwarder.cancel()
    assert client._server is not None
    client._stderr_forwarder = asyncio.create_task(_collect(client._server, lines))
    live = Live(client, root, lines)
    if configuration is not None:
        client.set_configuration(configuration, section="hushcode")

    @client.feature(types.TELEMETRY_EVENT)
    def telemetry(params: Any) -> None:
        live.telemetry.append(params)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        live.applied.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    base: dict[str, Any] = {"model": {"name": str(model)}, "completion": {"timeBudgetMs": 30000}}
    for section, values in (settings or {}).items():
        if isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **values}
        else:
            base[section] = values
    caps = client_capabilities(capabilities) if isinstance(capabilities, str) else capabilities
    try:
        result = await asyncio.wait_for(
            client.initialize_session(
                types.InitializeParams(
                    capabilities=caps,
                    root_uri=root.as_uri(),
                    workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
                    initialization_options=base if init_options is ... else init_options,
                )
            ),
            HANG,
        )
        live.capabilities = result.capabilities
        yield live
    finally:
        try:
            if live.alive():
                await asyncio.wait_for(client.shutdown_session(), timeout=30)
        except Exception as exc:  # the test's own assertion matters more
            sys.stderr.write(f"shutdown failed: {exc!r}\n")
        finally:
            await client.stop()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A private copy of `examples/` the test may change."""
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def start(home: Path, model_path: Path) -> Callable[..., Any]:
    """`async with start(root, settings=..., wrap=[...]) as s:` a real server on the real model."""

    def make(root: Path = EXAMPLES, **kw: Any) -> Any:
        kw.setdefault("home", home)
        kw.setdefault("model", model_path)
        return serve(root, **kw)

    return make


def command_works(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
