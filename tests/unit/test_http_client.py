"""The HTTP backend against a small scripted server on 127.0.0.1: dialects, streaming and early
close, errors, the API key, and recovery after the server comes back. (The real-server tests are
in tests/e2e/test_http_backend.py.)"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsp.completion.fim import load_templates, select_template
from lsp.config import parse_settings
from lsp.model.backend import ModelError
from lsp.model.http import EstimatingTokenizer, HttpModel, HttpOptions
from lsp.model.remote import Cutter, family_from_name

QWEN = {"<|fim_prefix|>": 151659, "<|fim_middle|>": 151660, "<|fim_suffix|>": 151661,
        "<|repo_name|>": 151663, "<|file_sep|>": 151664, "<|endoftext|>": 151643,
        "<|im_start|>": 151644, "<|im_end|>": 151645}  # fmt: skip
WORDS = ["def", " fib", "(n", "):", "\n", "    ", "return", " fib", "(n", "-", "1", ")"]


class Fake:
    """What the scripted server does; tests change it."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.reply = [" fib", "(n", " -", " 1", ")", "\n", "print", "(x", ")"]
        self.delay = 0.0
        self.key: str | None = None
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.sent: list[int] = []
        """Per streamed request: how many events were written before the client went away."""
        self.closed_early = threading.Event()
        self.connections: set[socket.socket] = set()


def _tokenize(text: str) -> list[int]:
    ids, i = [], 0
    while i < len(text):
        for special, tid in QWEN.items():
            if text.startswith(special, i):
                ids.append(tid)
                i += len(special)
                break
        else:
            ids.append(ord(text[i]))
            i += 1
    return ids


def _detokenize(tokens: list[int]) -> str:
    back = {v: k for k, v in QWEN.items()}
    return "".join(back.get(t, chr(t) if t < 0x110000 else "?") for t in tokens)


def handler(fake: Fake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fake.connections.add(self.connection)

        def _json(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else {}

        def _authorised(self) -> bool:
            if fake.key is None or self.headers.get("Authorization") == f"Bearer {fake.key}":
                return True
            self._json(401, {"error": {"message": "Invalid API key"}})
            return False

        def do_GET(self) -> None:
            fake.requests.append(("GET " + self.path, {}, dict(self.headers)))
            if not self._authorised():
                return
            if self.path == "/props" and fake.dialect == "llama-server":
                settings = {"n_ctx": 2048}
                props = {"default_generation_settings": settings, "chat_template": "{{ x }}"}
                self._json(200, {**props, "model_path": "/m/qwen.gguf"})
            elif self.path == "/v1/models":
                model = "qwen2.5-coder:7b" if fake.dialect == "plain" else "/m/qwen.gguf"
                self._json(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            else:
                self._json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = self._body()
            fake.requests.append(("POST " + self.path, body, dict(self.headers)))
            if not self._authorised():
                return
            if self.path == "/tokenize" and fake.dialect == "llama-server":
                self._json(200, {"tokens": _tokenize(body["content"])})
            elif self.path == "/detokenize" and fake.dialect == "llama-server":
                self._json(200, {"content": _detokenize(body["tokens"])})
            elif self.path == "/extras/tokenize" and fake.dialect == "llama-cpp-python":
                self._json(200, {"tokens": _tokenize(body["input"])})
            elif self.path == "/extras/detokenize" and fake.dialect == "llama-cpp-python":
                self._json(200, {"text": _detokenize(body["tokens"])})
            elif self.path in ("/completion", "/v1/completions"):
                self._stream(body)
            else:
                self._json(404, {"detail": "Not Found"})

        def _stream(self, body: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            limit = body.get("n_predict", body.get("max_tokens", 16))
            sent = 0
            try:
                for piece in fake.reply[: max(limit, 0)]:
                    time.sleep(fake.delay)
                    if self.path == "/completion":
                        event: dict[str, Any] = {"content": piece, "stop": False}
                    else:
                        event = {"choices": [{"text": piece, "finish_reason": None}]}
                    self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
                    sent += 1
                if self.path == "/completion":
                    final = {"content": "", "stop": True, "stop_type": "limit",
                             "tokens_predicted": sent,
                             "timings": {"cache_n": 3, "prompt_n": 2}}  # fmt: skip
                    self._chunk(b"data: " + json.dumps(final).encode() + b"\n\n")
                else:
                    end = {"choices": [{"text": "", "finish_reason": "length"}]}
                    self._chunk(b"data: " + json.dumps(end).encode() + b"\n\n")
                    self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            except OSError:
                fake.closed_early.set()
            fake.sent.append(sent)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


class Server:
    def __init__(self, fake: Fake, port: int = 0) -> None:
        self.fake = fake
        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler(fake))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """As a killed server: the listener and every open connection go."""
        self.httpd.shutdown()
        self.httpd.server_close()
        for conn in list(self.fake.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture(params=["llama-server", "llama-cpp-python", "plain"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    s = Server(Fake(request.param))
    yield s
    s.stop()


def options(url: str, **model: Any) -> HttpOptions:
    settings, problems = parse_settings({"model": {"backend": "http", "url": url, **model}})
    assert not problems
    return HttpOptions.from_settings(settings.model)


def test_each_dialect_is_found_and_picks_the_qwen_template(server: Server) -> None:
    model = HttpModel(options(server.url))
    try:
        expected = {"llama-server": "llama-server", "llama-cpp-python": "llama-cpp-python"}
        assert model.flavor == expected.get(server.fake.dialect, "openai")
        template, warning = select_template(model.info, load_templates())
        assert template.family == "qwen2.5-coder", (model.info, warning)
        assert warning is None
        assert model.info.n_ctx == (2048 if server.fake.dialect == "llama-server" else 4096)
        assert model.info.chat_template  # /props, or ChatML for a model with its tokens
        tokens = model.tokenize("<|fim_prefix|>def f():<|fim_suffix|><|fim_middle|>")
        assert model.detokenize(tokens) == "<|fim_prefix|>def f():<|fim_suffix|><|fim_middle|>"
    finally:
        model.close()


def test_generation_streams_and_the_stop_rule_closes_the_stream(server: Server) -> None:
    server.fake.delay = 0.02
    model = HttpModel(options(server.url))
    try:
        tokens = model.tokenize("<|fim_prefix|>x = <|fim_suffix|><|fim_middle|>")
        gen = model.generate(
            tokens,
            max_tokens=9,
            stop_check=lambda text: text.index("\n") if "\n" in text else None,
        )
        assert gen.text == " fib(n - 1)"
        assert gen.stats.stop_reason == "rule"
        assert server.fake.closed_early.wait(5), "the server kept streaming after the stop"
        assert server.fake.sent[-1] < len(server.fake.reply)
        # The whole reply: the server ends the stream itself and says why.
        gen = model.generate(tokens, max_tokens=4)
        assert gen.text == " fib(n - 1"
        assert gen.stats.stop_reason == "limit"
        sent = server.fake.requests[-1][1]
        assert sent.get("temperature") == 0.0
        if server.fake.dialect == "llama-server":
            assert sent["prompt"] == tokens and sent["cache_prompt"] is True
            assert gen.stats.reused_tokens == 3
        else:
            assert sent["prompt"] == "<|fim_prefix|>x = <|fim_suffix|><|fim_middle|>"
    finally:
        model.close()


def test_stop_strings_and_cancel(server: Server) -> None:
    server.fake.delay = 0.05
    model = HttpModel(options(server.url))
    try:
        tokens = model.tokenize("x = ")
        gen = model.generate(tokens, max_tokens=9, stop=[" -"])
        assert gen.text == " fib(n" and gen.stats.stop_reason == "stop"
        start = time.monotonic()
        gen = model.generate(tokens, max_tokens=9, cancel=lambda: time.monotonic() > start + 0.12)
        assert gen.stats.stop_reason == "cancelled"
        assert time.monotonic() - start < 0.4, "the cancel waited for the stream"
        gen = model.generate(tokens, max_tokens=9, deadline=time.monotonic() + 0.12)
        assert gen.stats.stop_reason == "time"
        assert gen.text and len(gen.text) < len("".join(server.fake.reply))
    finally:
        model.close()


def test_unreachable_server_message_and_recovery() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ModelError) as err:
        HttpModel(options(url, retries=1))
    assert str(err.value) == (
        f"cannot reach {url}: connection refused; start the server or set model.backend to local"
    )
    fake = Server(Fake("llama-server"), port)
    try:
        model = HttpModel(options(url))
        tokens = model.tokenize("x = ")
        assert model.generate(tokens, max_tokens=2).text == " fib(n"
    finally:
        fake.stop()
    with pytest.raises(ModelError, match="connection refused; start the server"):
        model.generate(tokens, max_tokens=2)
    fake = Server(Fake("llama-server"), port)
    try:
        deadline = time.monotonic() + 10
        while True:  # while it is down, a connection is tried at most every 0.5 s .. 5 s
            try:
                assert model.generate(tokens, max_tokens=2).text == " fib(n"
                break
            except ModelError:
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.1)
    finally:
        model.close()
        fake.stop()


def test_the_api_key_is_sent_and_never_shown(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-" + "x" * 20
    server.fake.key = secret
    caplog.set_level(logging.DEBUG, logger="lsp")
    with pytest.raises(ModelError) as err:
        HttpModel(options(server.url))
    assert "401" in str(err.value) and "model.apiKeyEnv" in str(err.value)
    monkeypatch.setenv("HUSHCODE_TEST_KEY", "wrong")
    with pytest.raises(ModelError) as err:
        HttpModel(options(server.url, apiKeyEnv="HUSHCODE_TEST_KEY"))
    assert "$HUSHCODE_TEST_KEY" in str(err.value) and "wrong" not in str(err.value)
    monkeypatch.setenv("HUSHCODE_TEST_KEY", secret)
    opts = options(server.url, apiKeyEnv="HUSHCODE_TEST_KEY")
    assert secret not in repr(opts)
    model = HttpModel(opts)
    model.generate(model.tokenize("x"), max_tokens=1)
    model.close()
    assert all(r[2].get("Authorization") == f"Bearer {secret}" for r in server.fake.requests[-3:])
    assert secret not in caplog.text
    monkeypatch.delenv("HUSHCODE_TEST_KEY")
    with pytest.raises(ModelError, match="HUSHCODE_TEST_KEY"):
        options(server.url, apiKeyEnv="HUSHCODE_TEST_KEY")


def test_a_server_without_a_tokenizer_gets_an_estimate_and_the_name_decides_fim() -> None:
    s = Server(Fake("plain"))
    try:
        model = HttpModel(options(s.url))
        assert model.info.metadata["hushcode.tokenizer"] == "estimate"
        assert model.info.fim.present
        text = "<|fim_prefix|>def fib(n):\n    return <|fim_suffix|>\n<|fim_middle|>"
        tokens = model.tokenize(text)
        assert 8 <= len(tokens) <= len(text) // 2
        assert model.detokenize(tokens[-5:]) == text[-len(model.detokenize(tokens[-5:])) :]
        gen = model.generate(tokens[1:], max_tokens=2)  # truncated: detokenized locally
        assert s.fake.requests[-1][1]["prompt"] == text[len("<|fim_prefix|>") :]
        assert gen.text == " fib(n"
        model.close()
        model = HttpModel(options(s.url, fim="starcoder"))
        assert select_template(model.info, load_templates())[0].family == "starcoder"
        model.close()
    finally:
        s.stop()


@given(st.text(max_size=200))
def test_estimated_tokens_round_trip(text: str) -> None:
    tok = EstimatingTokenizer(["<|fim_prefix|>", "<|fim_suffix|>", "<|endoftext|>"])
    assert tok.detokenize(tok.tokenize(text)) == text
    assert tok.detokenize(tok.tokenize("a<|fim_prefix|>" + text)) == "a<|fim_prefix|>" + text


def test_cutter_takes_the_earliest_cut_of_a_chunk() -> None:
    cutter = Cutter(["\n\n"], lambda t: t.index(";") if ";" in t else None, ["<|im_end|>"])
    assert not cutter.feed("a = 1")
    assert cutter.feed(";\n\nb")
    assert cutter.text == "a = 1" and cutter.reason == "rule"
    cutter = Cutter(["\n\n"], lambda t: t.index(";") if ";" in t else None)
    assert cutter.feed("a\n\nb;") and cutter.text == "a" and cutter.reason == "stop"
    cutter = Cutter([], None, ["<|im_end|>"])
    assert cutter.feed("done<|im_end|>x") and cutter.text == "done" and cutter.reason == "eos"


def test_family_from_name() -> None:
    assert family_from_name("qwen2.5-coder:7b-base") == "qwen2.5-coder"
    assert family_from_name("bigcode/starcoder2-3b") == "starcoder"
    assert family_from_name("deepseek-coder-v2-lite") == "deepseek-coder"
    assert family_from_name("llama3.1:8b") is None


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("http://127.0.0.1:8080", False, True),
        ("http://localhost:8080/v1", False, True),
        ("http://[::1]:8080", False, True),
        ("http://127.8.9.10", False, True),
        ("http://gpu.lan:8000", False, False),
        ("http://10.0.0.5:8000", True, False),
        ("https://gpu.example.com", False, False),
        ("https://gpu.example.com", True, True),
        ("https://user:pw@gpu.example.com", True, False),
        ("ftp://127.0.0.1", False, False),
    ],
)
def test_a_remote_url_needs_allow_remote_and_https(url: str, allow: bool, ok: bool) -> None:
    settings, problems = parse_settings(
        {"model": {"backend": "http", "url": url, "allowRemote": allow}}
    )
    assert (settings.model.url == url) is ok
    assert (not problems) is ok, problems


def test_backend_settings_defaults_keep_the_local_backend() -> None:
    settings, problems = parse_settings({})
    assert settings.model.backend == "local" and not problems
    settings, problems = parse_settings({"model": {"backend": "cloud", "retries": 99}})
    assert settings.model.backend == "local" and settings.model.retries == 2
    assert len(problems) == 2
