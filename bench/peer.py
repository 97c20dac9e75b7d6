"""The peer: llama.cpp's own `llama-server`, driven the way llama.vim drives it (`/infill`).

Built from the llama.cpp vendored in the llama-cpp-python sdist of the same version as our backend
(`bench/build_peer.sh`), started on 127.0.0.1 only, with llama.vim's recommended flags. The request
body and the client-side clean-up follow llama.vim's `autoload/llama.vim` (ggml-org/llama.vim):
256 lines of prefix, 64 of suffix, the cursor line's prefix as `prompt`, `n_indent`, `input_extra`
chunks. Sampling is made greedy (top_k 1) so that both sides decode deterministically.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
# llama.vim's defaults (autoload/llama.vim, s:default_config)
N_PREFIX_LINES = 256
N_SUFFIX_LINES = 64
N_PREDICT = 128
T_MAX_PROMPT_MS = 500
T_MAX_PREDICT_MS = 1000
# llama.vim's recommended server flags (README): --cache-reuse 256 -b 1024 -ub 1024
SERVER_FLAGS = ["--cache-reuse", "256", "-b", "1024", "-ub", "1024", "-np", "1"]


def cpu_key() -> str:
    """The same key as the top Makefile and build_peer.sh: md5 of the first /proc/cpuinfo flags."""
    import hashlib
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            line = next((x for x in fh if x.startswith("flags")), platform.machine() + "\n")
    except OSError:
        line = platform.machine() + "\n"
    return hashlib.md5(line.encode()).hexdigest()[:12]


def cached_binary(version: str) -> Path | None:
    base = Path(os.environ.get("BUILD_CACHE", Path.home() / ".cache" / "hushcode-build"))
    path = base / f"llama-server-{version}-{cpu_key()}" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class InfillResult:
    content: str
    """The raw `content` of the response."""
    text: str | None
    """What llama.vim would show (its client-side clean-up applied), None when nothing."""
    ms: float
    prompt_tokens: int = 0
    evaluated_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    stop_type: str = ""
    truncated: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalContext:
    """llama.vim's `s:fim_ctx_local`: the request's local part for a cursor."""

    prefix: str
    middle: str
    suffix: str
    indent: int
    line_cur: str
    next_lines: list[str]


def local_context(text: str, offset: int) -> LocalContext:
    lines = text.split("\n")
    y = text.count("\n", 0, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    x = offset - line_start
    line_cur = lines[y]
    prefix_lines = lines[max(0, y - N_PREFIX_LINES) : y]
    suffix_lines = lines[y + 1 : y + 1 + N_SUFFIX_LINES]
    cur_prefix, cur_suffix = line_cur[:x], line_cur[x:]
    if not line_cur.strip():
        # a line of whitespace only: start from the beginning of the line
        indent, cur_prefix, cur_suffix = 0, "", ""
    else:
        indent = len(line_cur) - len(line_cur.lstrip())
    return LocalContext(
        prefix="\n".join(prefix_lines) + "\n",
        middle=cur_prefix,
        suffix=cur_suffix + "\n" + "\n".join(suffix_lines) + "\n",
        indent=indent,
        line_cur=line_cur,
        next_lines=lines[y + 1 :],
    )


def request_body(ctx: LocalContext, extra: list[tuple[str, str]]) -> dict[str, Any]:
    """The body llama.vim's `llama#fim` posts, with greedy sampling (top_k 1)."""
    return {
        "input_prefix": ctx.prefix,
        "input_suffix": ctx.suffix,
        "input_extra": [{"filename": path, "text": body} for path, body in extra],
        "prompt": ctx.middle,
        "n_predict": N_PREDICT,
        "stop": [],
        "n_indent": ctx.indent,
        "top_k": 1,  # llama.vim: 40 (sampled); greedy here, as hushcode decodes
        "top_p": 0.90,
        "temperature": 0.0,
        "seed": 0,
        "stream": False,
        "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": True,
        "t_max_prompt_ms": T_MAX_PROMPT_MS,
        "t_max_predict_ms": T_MAX_PREDICT_MS,
        "response_fields": [
            "content",
            "timings/prompt_n",
            "timings/prompt_ms",
            "timings/predicted_n",
            "timings/predicted_ms",
            "timings/cache_n",
            "truncated",
            "tokens_cached",
            "tokens_evaluated",
            "stop_type",
        ],
    }


def render(content: str, ctx: LocalContext) -> str | None:
    """llama.vim's `s:fim_render` clean-up: what the user would see and accept (None: nothing)."""
    lines = content.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return None
    if not ctx.line_cur.strip():
        # a blank line: the suggestion's own indentation replaces the line's
        lead = min(len(lines[0]) - len(lines[0].lstrip()), len(ctx.line_cur))
        cur_prefix, cur_suffix = lines[0][:lead], ""
        lines[0] = lines[0][lead:]
    else:
        cur_prefix, cur_suffix = ctx.middle, ctx.line_cur[len(ctx.middle) :]
    nxt = ctx.next_lines
    if len(lines) == 1 and lines[0] == "":
        return None
    if len(lines) > 1 and lines[0] == "" and lines[1:] == nxt[: len(lines) - 1]:
        return None
    if len(lines) == 1 and lines[0] == cur_suffix:
        return None
    i = 0
    while i < len(nxt) - 1 and not nxt[i].strip():
        i += 1
    cmp_line = nxt[i] if i < len(nxt) else ""
    if cur_prefix + lines[0] == cmp_line:
        following = nxt[i + 1 :]
        if len(lines) == 1:
            return None
        if len(lines) == 2 and following and following[0].startswith(lines[-1]):
            return None
        if len(lines) > 2 and lines[1:] == following[: len(lines) - 1]:
            return None
    text = "\n".join(lines)
    return text if text.strip() else None


class PeerServer:
    """A `llama-server` process on 127.0.0.1 with the given model, threads and context."""

    def __init__(
        self, binary: Path, model: Path, *, threads: int, ctx: int, log_path: Path | None = None
    ) -> None:
        self.binary = binary
        self.model = model
        self.threads = threads
        self.ctx = ctx
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.load_seconds = 0.0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def command(self) -> list[str]:
        return [
            str(self.binary),
            "-m",
            str(self.model),
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "-t",
            str(self.threads),
            "-tb",
            str(self.threads),
            "-c",
            str(self.ctx),
            *SERVER_FLAGS,
        ]

    def start(self, timeout: float = 180) -> None:
        self.port = _free_port()
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError, ValueError),
                self._opener.open(self._url("/health"), timeout=2) as resp,
            ):
                if resp.status == 200:
                    self.load_seconds = time.perf_counter() - started
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama-server did not become healthy in time")

    def _url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(
            self._url(path), data=data, headers={"Content-Type": "application/json"}
        )
        with self._opener.open(req, timeout=timeout) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def infill(
        self, text: str, offset: int, extra: list[tuple[str, str]] | None = None
    ) -> InfillResult:
        ctx = local_context(text, offset)
        body = request_body(ctx, extra or [])
        started = time.perf_counter()
        raw = self.post("/infill", body)
        ms = (time.perf_counter() - started) * 1000
        content = str(raw.get("content", ""))
        prompt_n = int(raw.get("timings/prompt_n", 0) or 0)
        evaluated_total = int(raw.get("tokens_evaluated", 0) or 0)
        cache_n = raw.get("timings/cache_n")
        reused = int(cache_n) if cache_n is not None else max(0, evaluated_total - prompt_n)
        return InfillResult(
            content=content,
            text=render(content, ctx),
            ms=ms,
            prompt_tokens=evaluated_total,
            evaluated_tokens=prompt_n,
            reused_tokens=reused,
            generated_tokens=int(raw.get("timings/predicted_n", 0) or 0),
            stop_type=str(raw.get("stop_type", "")),
            truncated=bool(raw.get("truncated", False)),
            raw=raw,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
