"""The HTTP backend against real inference servers on 127.0.0.1 with the real GGUF.

llama-cpp-python's own `llama_cpp.server` (the `[server]` extra) through the real hushcode server
over stdio: completions and a code action, a cancel closing the stream, and the server going away
and coming back. llama.cpp's `llama-server` too, when `bench/build_peer.sh` has built it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types

from lsp.config import parse_settings
from lsp.model.http import HttpModel, HttpOptions

pytest.importorskip(
    "llama_cpp.server.app", reason="needs llama-cpp-python[server] (fastapi, uvicorn, ...)"
)
pytestmark = [pytest.mark.model, pytest.mark.slow]

FIB = "def fib(n):\n    if n < 2:\n        return n\n    return \n\n\nprint(fib(10))\n"
PRIME = (
    "def is_prime(n):\n"
    "    if n < 2:\n"
    "        return False\n"
    "    for i in range(2, int(n ** 0.5) + 1):\n"
    "        if n % i == 0:\n"
    "            return False\n"
    "    return True\n"
)
UNREACHABLE = "connection refused; start the server or set model.backend to local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealServer:
    """`python -m llama_cpp.server` on 127.0.0.1, one request at a time, not interrupting a
    running request for a new one (so a generation that was not stopped would be noticed)."""

    def __init__(self, model: Path, port: int, log: Path) -> None:
        self.model, self.port, self.log = model, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "4096",
                 "--n_threads", "2", "--interrupt_requests", "False"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_http(f"{self.url}/v1/models", self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def llama_cpp_server(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealServer]:
    server = RealServer(model_path, free_port(), tmp_path_factory.mktemp("lcs") / "server.log")
    server.start()
    yield server
    server.stop()


def http_model(url: str) -> HttpModel:
    settings, problems = parse_settings({"model": {"backend": "http", "url": url}})
    assert not problems
    return HttpModel(HttpOptions.from_settings(settings.model))


def new_texts(edit: types.WorkspaceEdit) -> list[str]:
    texts = [e.new_text for edits in (edit.changes or {}).values() for e in edits]
    for change in edit.document_changes or []:
        if isinstance(change, types.TextDocumentEdit):
            texts += [e.new_text for e in change.edits]
    return texts


async def test_completion_and_a_code_action_through_llama_cpp_server(session, llama_cpp_server):
    url = llama_cpp_server.url
    async with session(settings={"model": {"backend": "http", "url": url}}) as s:
        status = await s.wait_model()
        assert status["model"]["state"] == "ready", status
        assert status["model"]["family"] == "qwen2.5-coder"
        logs = [m.message for m in s.client.log_messages]
        (ready,) = [m for m in logs if f"@ {url} ready" in m]
        assert " 0 MB" not in ready and " 0 threads" not in ready, ready  # unknown: not said
        uri = s.open("scratch/fib.py", FIB)
        result = await s.inline(uri, 3, 11)
        assert result is not None and "fib(" in result, result
        assert "\n" not in result
        last = (await s.metrics())["last"]
        assert last["source"] == "model" and last["generated_tokens"] > 0, last

        uri = s.open("scratch/prime.py", PRIME)
        here = types.Range(start=types.Position(line=0, character=4),
                           end=types.Position(line=0, character=4))  # fmt: skip
        offered = await s.client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=here,
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
        actions = [a for a in offered or [] if isinstance(a, types.CodeAction)]
        doc = next((a for a in actions if "docstring" in a.title.lower()), None)
        assert doc is not None, [a.title for a in actions]
        resolved = await asyncio.wait_for(s.client.code_action_resolve_async(doc), 120)
        assert resolved.edit is not None
        inserted = "".join(new_texts(resolved.edit))
        assert '"""' in inserted, resolved.edit


def test_a_cancel_closes_the_stream_and_the_server_stops(llama_cpp_server):
    model = http_model(llama_cpp_server.url)
    try:
        tokens = model.tokenize("# A very long story about a cat, told in Python comments.\n#")
        seen: list[float] = []

        def note(text: str) -> None:
            if text and not seen:
                seen.append(time.monotonic())
            return None

        log_before = llama_cpp_server.log.read_text(errors="replace").count("Disconnected")
        gen = model.generate(tokens, max_tokens=1000, stop_check=note, cancel=lambda: bool(seen))
        cancelled = time.monotonic()
        assert gen.stats.stop_reason == "cancelled", gen.stats
        assert gen.stats.generated_tokens < 10
        deadline = time.monotonic() + 10
        while llama_cpp_server.log.read_text(errors="replace").count("Disconnected") == log_before:
            assert time.monotonic() < deadline, "the server did not notice the closed stream"
            time.sleep(0.1)
        # One request at a time, no interruption: had it gone on with its 1000 tokens, this one
        # would wait for them (tens of seconds on this machine) before starting.
        short = model.generate(model.tokenize("def add(a, b):\n    return"), max_tokens=4)
        assert short.text.strip(), short
        assert time.monotonic() - cancelled < 15
        # the optional chat path (/v1/chat/completions) streams too
        chat = model.chat([{"role": "user", "content": "Say hello."}], max_tokens=6)
        assert chat.text.strip() and chat.stats.generated_tokens > 0, chat
    finally:
        model.close()


async def test_the_server_going_away_is_said_clearly_and_it_recovers(session, model_path, tmp_path):
    server = RealServer(model_path, free_port(), tmp_path / "server.log")
    server.start()
    try:
        async with session(settings={"model": {"backend": "http", "url": server.url}}) as s:
            status = await s.wait_model()
            assert status["model"]["state"] == "ready", status
            uri = s.open("scratch/fib.py", FIB)
            assert await s.inline(uri, 3, 11)
            server.stop()
            s.type(uri, 5, 0, "x = ")  # a new position: not served from the cache
            assert not await s.inline(uri, 5, 4)
            message = f"cannot reach {server.url}: {UNREACHABLE}"
            deadline = time.monotonic() + 10
            while not any(message in m.message for m in s.client.log_messages):
                assert time.monotonic() < deadline, [m.message for m in s.client.log_messages]
                await asyncio.sleep(0.1)
            server.start()
            deadline = time.monotonic() + 60
            while not (text := await s.inline(uri, 5, 4)):
                assert time.monotonic() < deadline, "no completion after the server came back"
                await asyncio.sleep(0.5)
            assert text.strip()
    finally:
        server.stop()


def _llama_server_binary() -> Path | None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    try:
        from bench.peer import cached_binary
    except ImportError:
        return None
    finally:
        sys.path.pop(0)
    return cached_binary("0.3.36")


def test_llama_server_dialect(model_path, tmp_path):
    binary = os.environ.get("HUSHCODE_LLAMA_SERVER") or _llama_server_binary()
    if not binary or not Path(binary).exists():
        pytest.skip("llama-server is not built (bench/build_peer.sh)")
    port, log = free_port(), tmp_path / "llama-server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port),
             "-c", "4096", "-np", "1", "-t", "2"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        model = http_model(f"http://127.0.0.1:{port}")
        assert model.flavor == "llama-server"
        assert model.info.n_ctx == 4096 and model.info.chat_template
        prompt = "<|fim_prefix|>" + FIB[:54] + "<|fim_suffix|>" + FIB[54:] + "<|fim_middle|>"
        tokens = model.tokenize(prompt)
        first = model.generate(tokens, max_tokens=24, stop=["\n"])
        again = model.generate(tokens, max_tokens=24, stop=["\n"])
        assert "fib(" in first.text and again.text == first.text, (first, again)
        assert again.stats.reused_tokens >= len(tokens) - 1, again.stats  # cache_prompt
        model.close()
    finally:
        proc.terminate()
        proc.wait(15)
