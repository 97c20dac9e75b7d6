"""One model for many windows: a per-user daemon on a Unix socket, and the `Model` that talks to it.

The first `hushcode serve` with `model.backend: daemon` finds no daemon answering on the socket and
starts one, detached (`hushcode daemon run`); a lock file makes sure only one runs per model and
settings, and the others connect to it. Each window holds one connection; when the last one has been
gone for `model.daemonIdleSeconds` the daemon exits.

Where: `<hushcode home>/daemon/` (mode 0700) holds `<key>.sock` (0600), `<key>.lock` and
`<key>.log`; the key is a hash of the model file, context size, threads and slots. Connections
from other users are refused (SO_PEERCRED) even if the modes were loosened.

The protocol: frames of a 4-byte big-endian length and a UTF-8 JSON object. `hello` (the model's
info, once loaded), `tokenize`, `detokenize`, `generate` (streams `chunk`s, then `done`), `evaluate`
(warm-up, `done`), `cancel`, `status`, `stop`.

One context, one KV sequence per window: llama.cpp keeps a separate sequence per `seq_id`
(`model.daemonSlots` of them, `contextSize` tokens each), so two windows that alternate keep their
own prefixes cached. With more windows than slots, windows share slots (and then re-evaluate more).
The scheduler advances one job by one step at a time — a prompt chunk of 64 tokens or one generated
token — choosing completions before actions before warm-ups and, within a class, the window served
longest ago: round-robin between tokens. (Batching several windows' tokens into one decode was
measured slower on a 2-core CPU, so each step is one sequence.)

The stop rules stay in the window's process: the daemon streams the text, the client applies
`stop_check` as chunks arrive and sends `cancel` when it has what it needs (stop strings and the
deadline are also applied by the daemon itself).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import ctypes
import dataclasses
import hashlib
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsp import paths
from lsp.model.backend import (
    FimTokens,
    Generation,
    GenerationStats,
    ModelError,
    ModelInfo,
    StopCheck,
    find_stop,
)
from lsp.model.llama import best_token
from lsp.model.remote import COMPLETION, WARMUP, Cutter

log = logging.getLogger(__name__)

PROTOCOL = 1
_MAX_FRAME = 64 << 20
_CHUNK = 64
"""Prompt tokens per scheduling step (as the in-process backend evaluates them)."""


# -- where --------------------------------------------------------------------------------------


def daemon_dir() -> Path:
    return paths.ensure_private_dir(paths.home() / "daemon")


def daemon_key(path: Path, *, n_ctx: int, n_threads: int, slots: int) -> str:
    ident = f"{path.resolve()}|{n_ctx}|{n_threads}|{slots}|{PROTOCOL}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def socket_path(key: str) -> Path:
    """`<home>/daemon/<key>.sock`, or, when that is too long for a Unix socket address (108
    bytes), a private directory in the temporary directory."""
    path = daemon_dir() / f"{key}.sock"
    if len(os.fsencode(path)) < 100:
        return path
    tmp = Path(tempfile.gettempdir()) / f"hushcode-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        tmp.mkdir(mode=0o700)
    st = tmp.lstat()
    if not tmp.is_dir() or tmp.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ModelError(f"{tmp} is not a private directory of this user: remove it")
    home = hashlib.sha256(str(paths.home()).encode()).hexdigest()[:8]
    return tmp / f"{home}-{key}.sock"


# -- frames ---------------------------------------------------------------------------------------


def send_frame(sock: socket.socket, obj: dict[str, Any]) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    sock.sendall(struct.pack(">I", len(data)) + data)


class FrameReader:
    """Frames out of a stream of bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> dict[str, Any] | None:
        if len(self._buf) < 4:
            return None
        (size,) = struct.unpack(">I", self._buf[:4])
        if size > _MAX_FRAME:
            raise ValueError(f"frame of {size} bytes")
        if len(self._buf) < 4 + size:
            return None
        data = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("a frame is not an object")
        return obj


def info_to_json(info: ModelInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["token_texts"] = {str(k): v for k, v in info.token_texts.items()}
    return data


def info_from_json(data: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        name=data["name"],
        path=data["path"],
        size_bytes=int(data["size_bytes"]),
        n_ctx=int(data["n_ctx"]),
        n_threads=int(data["n_threads"]),
        fim=FimTokens(**data["fim"]),
        token_texts={int(k): v for k, v in data["token_texts"].items()},
        eog_texts=tuple(data["eog_texts"]),
        chat_template=data.get("chat_template"),
        metadata=dict(data.get("metadata") or {}),
    )


# -- the daemon: one context, one sequence per window ---------------------------------------------


class SharedLlama:
    """llama-cpp-python with one context of `slots` KV sequences of `n_ctx` tokens each."""

    def __init__(self, path: Path, *, name: str, n_ctx: int, n_threads: int, slots: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        from lsp.model.llama import LlamaModel

        # The in-process backend loads the file and reads the vocabulary; its own small context
        # is replaced by one with a sequence per slot.
        self.base = LlamaModel(path, name=name, n_ctx=512, n_threads=n_threads)
        llm = self.base._llm
        params = llm.context_params
        params.n_ctx = n_ctx * slots
        params.n_seq_max = slots
        params.kv_unified = False
        try:
            self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        except ValueError as exc:
            self.base.close()
            raise ModelError(f"llama.cpp could not make a context of {slots} x {n_ctx}") from exc
        llm._ctx.close()
        self._lib = llama_cpp
        self._batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
        self._vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()
        self.stop_ids = self.base._stop_ids
        self.slots = slots
        self.info = dataclasses.replace(self.base.info, n_ctx=n_ctx)

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.base.tokenize(text, special=special)

    def piece(self, token: int, *, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)  # per call: connection threads detokenize too
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int]) -> str:
        data = b"".join(self.piece(t, special=True) for t in tokens)
        return data.decode("utf-8", errors="replace")

    def forget(self, seq: int, keep: int) -> None:
        """Drop sequence `seq`'s cache from position `keep` on."""
        self._lib.llama_memory_seq_rm(self.ctx.memory, seq, keep, -1)

    def decode(
        self, seq: int, start: int, tokens: Sequence[int], *, logits: bool, heal: str = ""
    ) -> int | None:
        """Evaluate `tokens` at positions `start...` of `seq`; the greedy next token if `logits`
        (with `heal`, the best token consistent with that text: see `Model.generate`)."""
        b = self._batch.batch
        b.n_tokens = len(tokens)
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = start + i
            b.seq_id[i][0] = seq
            b.n_seq_id[i] = 1
            b.logits[i] = False
        b.logits[len(tokens) - 1] = logits
        self.ctx.decode(self._batch)
        if not logits:
            return None
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self.ctx.ctx, len(tokens) - 1)
        values = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        )
        return best_token(values, self.base.consistent_tokens(heal) if heal else None)

    def close(self) -> None:
        self.ctx.close()
        self.base.close()


@dataclasses.dataclass
class _Slot:
    seq: int
    cached: list[int] = dataclasses.field(default_factory=list)
    busy: _Job | None = None
    clients: int = 0


class _Conn:
    """One window's connection, daemon side."""

    def __init__(self, sock: socket.socket, ident: int) -> None:
        self.sock = sock
        self.ident = ident
        self.slot: _Slot | None = None
        """Given at `hello`: only windows count (a `status` query is no window)."""
        self.served = 0
        self.alive = True
        self._lock = threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        if not self.alive:
            return
        try:
            with self._lock:
                send_frame(self.sock, obj)
        except OSError:
            self.alive = False


@dataclasses.dataclass(eq=False)
class _Job:
    conn: _Conn
    rid: int
    kind: str
    tokens: list[int]
    max_tokens: int = 0
    stop: tuple[str, ...] = ()
    prefix: str = ""
    """Text the output must start with (token healing)."""
    deadline: float | None = None
    priority: int = COMPLETION
    cancelled: bool = False
    started: bool = False
    pending: list[int] = dataclasses.field(default_factory=list)
    next_token: int = -1
    text: str = ""
    sent: int = 0
    stats: GenerationStats = dataclasses.field(default_factory=GenerationStats)
    begun: float = 0.0
    gen_begun: float = 0.0

    def __post_init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")

    def uncovered(self) -> str:
        """What of `prefix` the output has not written yet."""
        return self.prefix[len(self.text) :] if len(self.text) < len(self.prefix) else ""


class Daemon:
    def __init__(
        self,
        model: Path,
        *,
        name: str,
        n_ctx: int,
        n_threads: int,
        slots: int,
        idle_seconds: float,
        sock_path: Path,
        lock_path: Path,
    ) -> None:
        self.model_path = model
        self.name = name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.idle_seconds = idle_seconds
        self.sock_path = sock_path
        self.lock_path = lock_path
        self.slots = [_Slot(i) for i in range(slots)]
        self.engine: SharedLlama | None = None
        self.loads = 0
        self.error: str | None = None
        self.ready = threading.Event()
        self.started = time.monotonic()
        self.jobs_done = 0
        self.steps = 0
        self._jobs: list[_Job] = []
        self._conns: dict[int, _Conn] = {}
        self._ids = 0
        self._cv = threading.Condition()
        self._stopping = threading.Event()
        self._last_client = time.monotonic()

    # -- process ----------------------------------------------------------------------------------

    def serve(self) -> int:
        import fcntl

        lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another daemon holds %s; exiting", self.lock_path)
            os.close(lock)
            return 0
        os.ftruncate(lock, 0)
        os.write(lock, f"{os.getpid()}\n".encode())
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()  # a dead daemon's socket: we hold the lock, it is ours
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.sock_path))
        finally:
            os.umask(old_umask)
        os.chmod(self.sock_path, 0o600)
        listener.listen(16)
        listener.settimeout(0.2)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopping.set())
        log.info("daemon %d serving %s on %s", os.getpid(), self.model_path, self.sock_path)
        threading.Thread(target=self._load, name="hushcode-daemon-load", daemon=True).start()
        worker = threading.Thread(target=self._work, name="hushcode-daemon-model", daemon=True)
        worker.start()
        try:
            while not self._stopping.is_set():
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    self._check_idle()
                    continue
                self._accept(sock)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.sock_path.unlink()
            listener.close()
            with self._cv:
                self._stopping.set()
                for job in self._jobs:
                    job.cancelled = True
                self._cv.notify_all()
            worker.join(timeout=10)
            for conn in list(self._conns.values()):
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
            if self.engine is not None:
                self.engine.close()
            os.close(lock)
            log.info("daemon %d stopped", os.getpid())
        return 1 if self.error else 0

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            self.engine = SharedLlama(
                self.model_path,
                name=self.name,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                slots=len(self.slots),
            )
            self.loads += 1
            log.info("model loaded in %.2f s", time.perf_counter() - start)
        except Exception as exc:
            self.error = str(exc) if isinstance(exc, ModelError) else f"load failed: {exc}"
            log.exception("model load failed")
        finally:
            self.ready.set()
            self._last_client = time.monotonic()

    def _windows(self) -> int:
        return sum(1 for c in self._conns.values() if c.slot is not None)

    def _check_idle(self) -> None:
        with self._cv:
            idle = not self._windows() and self.ready.is_set()
            if idle and time.monotonic() - self._last_client > self.idle_seconds:
                log.info("no window for %.0f s: exiting", self.idle_seconds)
                self._stopping.set()
            if self.error is not None and not self._conns:
                self._stopping.set()  # the load failed and everyone has been told

    def _accept(self, sock: socket.socket) -> None:
        peercred = getattr(socket, "SO_PEERCRED", None)  # Linux; elsewhere the 0700 dir guards
        uid = os.getuid()
        if peercred is not None:
            try:
                creds = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
                _, uid, _ = struct.unpack("3i", creds)
            except OSError:
                uid = -1
        if uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            sock.close()
            return
        sock.settimeout(None)
        with self._cv:
            self._ids += 1
            conn = _Conn(sock, self._ids)
            self._conns[conn.ident] = conn
        threading.Thread(
            target=self._read, args=(conn,), name=f"hushcode-daemon-conn-{conn.ident}", daemon=True
        ).start()

    def _read(self, conn: _Conn) -> None:
        reader = FrameReader()
        try:
            while True:
                data = conn.sock.recv(65536)
                if not data:
                    break
                reader.feed(data)
                while (frame := reader.next()) is not None:
                    self._handle(conn, frame)
        except (OSError, ValueError) as exc:
            log.debug("connection %d: %s", conn.ident, exc)
        finally:
            self._disconnect(conn)

    def _disconnect(self, conn: _Conn) -> None:
        conn.alive = False
        with self._cv:
            self._conns.pop(conn.ident, None)
            if conn.slot is not None:
                conn.slot.clients -= 1
                if not self._windows():
                    self._last_client = time.monotonic()
            for job in self._jobs:
                if job.conn is conn:
                    job.cancelled = True
            self._cv.notify_all()
        with contextlib.suppress(OSError):
            conn.sock.close()

    # -- requests ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._cv:
            return {
                "op": "status",
                "pid": os.getpid(),
                "protocol": PROTOCOL,
                "model": str(self.model_path),
                "ready": self.ready.is_set() and self.error is None,
                "error": self.error,
                "loads": self.loads,
                "clients": self._windows(),
                "slots": [
                    {"seq": s.seq, "cached": len(s.cached), "clients": s.clients}
                    for s in self.slots
                ],
                "contextSize": self.n_ctx,
                "jobsDone": self.jobs_done,
                "steps": self.steps,
                "uptimeSeconds": round(time.monotonic() - self.started, 1),
                "idleSeconds": self.idle_seconds,
            }

    def _handle(self, conn: _Conn, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        rid = int(frame.get("id", 0))
        if op == "status":
            conn.send({**self.status(), "id": rid})
            return
        if op == "stop":
            conn.send({"op": "result", "id": rid})
            self._stopping.set()
            return
        if op == "cancel":
            with self._cv:
                for job in self._jobs:
                    if job.conn is conn and job.rid == rid:
                        job.cancelled = True
                self._cv.notify_all()
            return
        self.ready.wait()
        engine = self.engine
        if engine is None:
            conn.send({"op": "error", "id": rid, "message": self.error or "no model"})
            return
        try:
            if op == "hello":
                with self._cv:
                    if conn.slot is None:
                        slot = min(self.slots, key=lambda s: (s.clients, s.seq))
                        slot.clients += 1
                        conn.slot = slot
                conn.send(
                    {
                        "op": "hello",
                        "id": rid,
                        "protocol": PROTOCOL,
                        "info": info_to_json(engine.info),
                        "pid": os.getpid(),
                        "loads": self.loads,
                        "slot": conn.slot.seq if conn.slot else -1,
                    }
                )
            elif op == "tokenize":
                tokens = engine.tokenize(
                    str(frame["text"]), special=bool(frame.get("special", True))
                )
                conn.send({"op": "result", "id": rid, "tokens": tokens})
            elif op == "detokenize":
                text = engine.detokenize([int(t) for t in frame["tokens"]])
                conn.send({"op": "result", "id": rid, "text": text})
            elif op in ("generate", "evaluate"):
                if conn.slot is None:
                    raise ModelError("say hello first")
                tokens = [int(t) for t in frame["tokens"]]
                if len(tokens) >= self.n_ctx:
                    raise ModelError(f"prompt of {len(tokens)} tokens does not fit the context")
                timeout = frame.get("timeout")
                job = _Job(
                    conn=conn,
                    rid=rid,
                    kind=op,
                    tokens=tokens,
                    max_tokens=int(frame.get("max_tokens", 0)),
                    stop=tuple(str(s) for s in frame.get("stop", ())),
                    prefix=str(frame.get("prefix", "")),
                    deadline=None if timeout is None else time.monotonic() + float(timeout),
                    priority=WARMUP if op == "evaluate" else int(frame.get("priority", COMPLETION)),
                )
                with self._cv:
                    self._jobs.append(job)
                    self._cv.notify_all()
            else:
                raise ModelError(f"unknown request {op!r}")
        except (ModelError, KeyError, TypeError, ValueError) as exc:
            conn.send({"op": "error", "id": rid, "message": str(exc)})

    # -- the model thread -------------------------------------------------------------------------

    def _pick(self) -> _Job | None:
        runnable = [
            j for j in self._jobs if j.conn.slot is not None and j.conn.slot.busy in (None, j)
        ]
        if not runnable:
            return None
        return min(runnable, key=lambda j: (j.priority, j.conn.served, j.rid))

    def _work(self) -> None:
        self.ready.wait()
        while True:
            with self._cv:
                job = self._pick()
                while job is None and not self._stopping.is_set():
                    self._cv.wait(0.5)
                    job = self._pick()
                if job is None:
                    return
                self.steps += 1
                job.conn.served = self.steps
            try:
                self._step(job)
            except Exception as exc:
                log.exception("a request failed")
                self._finish(job, "error", message=str(exc))

    def _step(self, job: _Job) -> None:
        engine = self.engine
        slot = job.conn.slot
        assert engine is not None and slot is not None
        if job.cancelled or self._stopping.is_set():
            self._finish(job, "cancelled")
            return
        if job.deadline is not None and time.monotonic() > job.deadline:
            self._finish(job, "time")
            return
        if not job.started:
            job.started = True
            job.begun = time.perf_counter()
            slot.busy = job
            tokens, cached = job.tokens, slot.cached
            n = 0
            limit = min(len(cached), len(tokens))
            while n < limit and cached[n] == tokens[n]:
                n += 1
            if n == len(tokens):
                n -= 1  # the last token is evaluated again so its logits are current
            n = max(n, 0)
            engine.forget(slot.seq, n)
            del slot.cached[n:]
            job.pending = list(tokens[n:])
            job.stats = GenerationStats(prompt_tokens=len(tokens), reused_tokens=n)
        if job.pending:
            chunk, job.pending = job.pending[:_CHUNK], job.pending[_CHUNK:]
            last = not job.pending
            token = engine.decode(
                slot.seq,
                len(slot.cached),
                chunk,
                logits=last and job.kind == "generate",
                heal=job.prefix,
            )
            slot.cached.extend(chunk)
            job.stats.evaluated_tokens += len(chunk)
            if last:
                job.stats.eval_ms = (time.perf_counter() - job.begun) * 1000
                job.gen_begun = time.perf_counter()
                if job.kind == "evaluate":
                    self._finish(job, "warmup")
                    return
                job.next_token = -1 if token is None else token
            return
        self._generate_one(job, engine, slot)

    def _generate_one(self, job: _Job, engine: SharedLlama, slot: _Slot) -> None:
        if job.stats.generated_tokens >= job.max_tokens:
            self._finish(job, "limit")
            return
        token = job.next_token
        if token < 0 or token in engine.stop_ids:
            self._finish(job, "eos")
            return
        job.stats.generated_tokens += 1
        job.text += job.decoder.decode(engine.piece(token, special=False))
        cut = find_stop(job.text, job.stop)
        if cut is not None:
            job.text = job.text[:cut]
            self._flush(job)
            self._finish(job, "stop")
            return
        self._flush(job)
        if job.stats.generated_tokens >= job.max_tokens:
            self._finish(job, "limit")
            return
        next_token = engine.decode(
            slot.seq, len(slot.cached), [token], logits=True, heal=job.uncovered()
        )
        slot.cached.append(token)
        job.next_token = -1 if next_token is None else next_token

    def _flush(self, job: _Job) -> None:
        """Send the new text, with the numbers so far (a client that stops early has them)."""
        if len(job.text) > job.sent:
            st = job.stats
            job.conn.send(
                {
                    "op": "chunk",
                    "id": job.rid,
                    "text": job.text[job.sent :],
                    "generated": st.generated_tokens,
                    "reused": st.reused_tokens,
                    "evaluated": st.evaluated_tokens,
                    "eval_ms": st.eval_ms,
                }
            )
            job.sent = len(job.text)

    def _finish(self, job: _Job, reason: str, *, message: str = "") -> None:
        job.stats.stop_reason = reason
        if job.gen_begun:
            job.stats.generate_ms = (time.perf_counter() - job.gen_begun) * 1000
        elif job.begun:
            job.stats.eval_ms = (time.perf_counter() - job.begun) * 1000
        with self._cv:
            if job in self._jobs:
                self._jobs.remove(job)
            slot = job.conn.slot
            if slot is not None and slot.busy is job:
                slot.busy = None
            self.jobs_done += 1
        if reason == "error":
            job.conn.send({"op": "error", "id": job.rid, "message": message})
        else:
            job.conn.send({"op": "done", "id": job.rid, "stats": dataclasses.asdict(job.stats)})


# -- the client: a Model in each window ---------------------------------------------------------


class DaemonModel:
    """A `Model` (see backend.py) whose work is done by the shared daemon."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        n_ctx: int,
        n_threads: int,
        slots: int = 4,
        idle_seconds: float = 10,
        priority: Callable[[], int] | None = None,
        start_timeout: float = 180,
    ) -> None:
        from lsp.model.llama import check_gguf

        check_gguf(path)
        self.path = path
        self.name = name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.slots = slots
        self.idle_seconds = idle_seconds
        self.priority = priority
        self.start_timeout = start_timeout
        self.key = daemon_key(path, n_ctx=n_ctx, n_threads=n_threads, slots=slots)
        self.socket = socket_path(self.key)
        self.log_path = daemon_dir() / f"{self.key}.log"
        self._sock: socket.socket | None = None
        self._reader = FrameReader()
        self._ids = 0
        self._lock = threading.RLock()
        self.spawned = False
        hello = self._connect()
        self.daemon_pid = int(hello.get("pid", 0))
        self.info = dataclasses.replace(info_from_json(hello["info"]), name=name)

    # -- connection -------------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        log.info("starting the model daemon (log: %s)", self.log_path)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as logf:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lsp",
                    "daemon",
                    "run",
                    "--model",
                    str(self.path),
                    "--name",
                    self.name,
                    "--context-size",
                    str(self.n_ctx),
                    "--threads",
                    str(self.n_threads),
                    "--slots",
                    str(self.slots),
                    "--idle-seconds",
                    str(self.idle_seconds),
                    "--socket",
                    str(self.socket),
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,
                close_fds=True,
            )
        threading.Thread(target=proc.wait, name="hushcode-daemon-reaper", daemon=True).start()
        self.spawned = True
        return proc

    def _connect(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.start_timeout
        proc: subprocess.Popen[bytes] | None = None
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.socket))
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if proc is None:
                    proc = self._spawn()
                elif proc.poll() not in (None, 0):
                    raise ModelError(
                        f"the model daemon failed to start: {self._log_tail()}"
                    ) from None
                if time.monotonic() > deadline:
                    raise ModelError(
                        f"the model daemon did not start within {self.start_timeout:.0f} s: "
                        f"{self._log_tail()}"
                    ) from None
                time.sleep(0.05)
                continue
            self._sock, self._reader = sock, FrameReader()
            try:
                hello = self._call({"op": "hello", "protocol": PROTOCOL}, deadline=deadline)
            except _Gone:
                self._drop()
                time.sleep(0.05)  # a daemon shutting down as we came: start or find another
                continue
            return hello

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        useful = [line for line in lines if "error" in line.lower() or "Error" in line]
        return (useful or lines or ["no log"])[-1][-300:] + f" (log: {self.log_path})"

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _ensure(self) -> None:
        if self._sock is None:
            hello = self._connect()
            self.daemon_pid = int(hello.get("pid", 0))

    def _send(self, obj: dict[str, Any]) -> None:
        assert self._sock is not None
        try:
            send_frame(self._sock, obj)
        except OSError as exc:
            self._drop()
            raise _Gone(str(exc)) from exc

    def _recv(self, timeout: float | None) -> dict[str, Any] | None:
        """The next frame; None when `timeout` passes first."""
        sock = self._sock
        assert sock is not None
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                frame = self._reader.next()
            except ValueError as exc:
                self._drop()
                raise _Gone(f"bad frame: {exc}") from exc
            if frame is not None:
                return frame
            left = None if end is None else max(0.0, end - time.monotonic())
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                return None
            try:
                data = sock.recv(65536)
            except OSError as exc:
                self._drop()
                raise _Gone(str(exc)) from exc
            if not data:
                self._drop()
                raise _Gone("the daemon closed the connection")
            self._reader.feed(data)

    def _call(self, obj: dict[str, Any], *, deadline: float | None = None) -> dict[str, Any]:
        self._ids += 1
        rid = self._ids
        self._send({**obj, "id": rid})
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self._drop()
                raise ModelError("the model daemon did not answer in time")
            frame = self._recv(left)
            if frame is None or frame.get("id") != rid:
                continue  # what is left of a request given up on
            if frame.get("op") == "error":
                raise ModelError(f"model daemon: {frame.get('message')}")
            return frame

    def _gone(self, exc: _Gone) -> ModelError:
        return ModelError(
            f"the hushcode model daemon went away ({exc}); the next request starts it again "
            f"(log: {self.log_path})"
        )

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            try:
                self._ensure()
                return self._call(obj)
            except _Gone as exc:
                raise self._gone(exc) from exc

    def status(self) -> dict[str, Any]:
        return self.request({"op": "status"})

    # -- the Model interface ----------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [
            int(t)
            for t in self.request({"op": "tokenize", "text": text, "special": special})["tokens"]
        ]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return str(self.request({"op": "detokenize", "tokens": list(tokens)})["text"])

    def evaluate(self, tokens: Sequence[int], cancel: Callable[[], bool]) -> GenerationStats:
        gen = self._stream(
            {"op": "evaluate", "tokens": list(tokens)}, Cutter((), None), cancel, None
        )
        return gen.stats

    def generate(
        self,
        tokens: Sequence[int],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        stop_check: StopCheck | None = None,
        cancel: Callable[[], bool] = lambda: False,
        deadline: float | None = None,
        prefix: str = "",
    ) -> Generation:
        priority = self.priority() if self.priority is not None else COMPLETION
        request = {
            "op": "generate",
            "tokens": list(tokens),
            "max_tokens": max_tokens,
            "stop": list(stop),
            "prefix": prefix,
            "priority": max(COMPLETION, min(WARMUP, priority)),
            "timeout": None if deadline is None else max(0.0, deadline - time.monotonic()),
        }
        return self._stream(request, Cutter(stop, stop_check), cancel, deadline)

    def _stream(
        self,
        request: dict[str, Any],
        cutter: Cutter,
        cancel: Callable[[], bool],
        deadline: float | None,
    ) -> Generation:
        stats = GenerationStats(prompt_tokens=len(request["tokens"]))
        first: float | None = None
        done = False
        with self._lock:
            try:
                self._ensure()
                self._ids += 1
                rid = self._ids
                self._send({**request, "id": rid})
                while True:
                    frame = self._recv(0.02)
                    if frame is None or frame.get("id") != rid:
                        reason = _stopped(cancel, deadline)
                        if frame is None and reason is not None:
                            self._send({"op": "cancel", "id": rid})
                            stats.stop_reason = reason
                            break
                        continue
                    op = frame.get("op")
                    if op == "chunk":
                        if first is None:
                            first = time.perf_counter()
                            stats.reused_tokens = int(frame.get("reused", 0))
                            stats.evaluated_tokens = int(frame.get("evaluated", 0))
                            stats.eval_ms = float(frame.get("eval_ms", 0.0))
                        stats.generated_tokens = int(frame.get("generated", 0))
                        if cutter.feed(str(frame.get("text", ""))):
                            self._send({"op": "cancel", "id": rid})  # the rules have what they need
                            stats.stop_reason = cutter.reason
                            break
                        if (reason := _stopped(cancel, deadline)) is not None:
                            self._send({"op": "cancel", "id": rid})
                            stats.stop_reason = reason
                            break
                    elif op == "done":
                        stats = GenerationStats(**frame["stats"])
                        done = True
                        break
                    elif op == "error":
                        raise ModelError(f"model daemon: {frame.get('message')}")
            except _Gone as exc:
                raise self._gone(exc) from exc
        if first is not None and not done:
            stats.generate_ms = (time.perf_counter() - first) * 1000
        if cutter.reason:
            stats.stop_reason = cutter.reason
        return Generation(cutter.text, stats)

    def close(self) -> None:
        self._drop()


class _Gone(Exception):
    """The connection to the daemon is lost."""


def _stopped(cancel: Callable[[], bool], deadline: float | None) -> str | None:
    if cancel():
        return "cancelled"
    if deadline is not None and time.monotonic() > deadline:
        return "time"
    return None


# -- command line ---------------------------------------------------------------------------------


def add_daemon_parser(sub: Any) -> None:
    daemon = sub.add_parser("daemon", help="the model daemon shared by editor windows")
    dsub = daemon.add_subparsers(dest="daemon_command")
    run = dsub.add_parser("run", help="run a daemon (started on demand by `serve`)")
    run.add_argument("--model", required=True, help="the GGUF file")
    run.add_argument("--name", default=None)
    run.add_argument("--context-size", type=int, default=4096)
    run.add_argument("--threads", type=int, default=0)
    run.add_argument("--slots", type=int, default=4)
    run.add_argument("--idle-seconds", type=float, default=10)
    run.add_argument("--socket", default=None, help="default: derived from the other options")
    dsub.add_parser("status", help="show the running daemons")
    dsub.add_parser("stop", help="stop the running daemons")


def _sockets() -> list[Path]:
    found = sorted(daemon_dir().glob("*.sock"))
    tmp = Path(tempfile.gettempdir()) / f"hushcode-{os.getuid()}"
    if tmp.is_dir() and not tmp.is_symlink():
        home = hashlib.sha256(str(paths.home()).encode()).hexdigest()[:8]
        found += sorted(tmp.glob(f"{home}-*.sock"))
    return found


def query(sock_path: Path, op: str = "status", timeout: float = 5) -> dict[str, Any]:
    """One request to a daemon (status or stop), without registering as a window for long."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        send_frame(sock, {"op": op, "id": 1})
        reader = FrameReader()
        while (frame := reader.next()) is None:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the daemon closed the connection")
            reader.feed(data)
        return frame


def run_daemon_command(args: argparse.Namespace) -> int:
    from lsp import log as logsetup

    command = getattr(args, "daemon_command", None)
    if command == "run":
        logsetup.setup("info")
        model = Path(args.model)
        key = daemon_key(model, n_ctx=args.context_size, n_threads=args.threads, slots=args.slots)
        sock = Path(args.socket) if args.socket else socket_path(key)
        daemon = Daemon(
            model,
            name=args.name or model.name,
            n_ctx=args.context_size,
            n_threads=args.threads,
            slots=args.slots,
            idle_seconds=args.idle_seconds,
            sock_path=sock,
            lock_path=daemon_dir() / f"{key}.lock",
        )
        return daemon.serve()
    if command in ("status", "stop"):
        sockets = _sockets()
        if not sockets:
            print("no model daemon is running")
            return 0
        for sock in sockets:
            try:
                print(json.dumps(query(sock, command), indent=2))
            except OSError as exc:
                print(f"{sock}: not answering ({exc})")
        return 0
    print("usage: hushcode daemon {run,status,stop}", file=sys.stderr)
    return 2
