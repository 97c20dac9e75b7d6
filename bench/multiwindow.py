"""Many windows, one model: memory of 1 vs 3 windows per backend, and latency per backend.

    python -m bench.multiwindow [--model PATH] [--requests N] [--out FILE]

Memory: N real `hushcode serve` processes (the editor windows) on examples/, each asked for
completions, for `model.backend` local (a model per window), daemon (one shared model) and http (a
`llama_cpp.server` on 127.0.0.1). Per process it reads the peak RSS (VmHWM) and the PSS (which
splits shared pages, such as the memory-mapped model file, between the processes that map them),
and sums them over the windows plus the daemon or server.

Latency: the same completion requests through one window on each backend, the same GGUF: the
first request at a place (prompt mostly new) and the next after typing one character (prompt
prefix cached). Warm-up is off so that each number is one request; index off so the prompts are
identical across backends.

Writes bench/results/multiwindow-latest.md (and .json). Only loopback and Unix sockets are used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lspclient import ServerSession, serve  # noqa: E402

EXAMPLES = ROOT / "examples"
RESULTS = ROOT / "bench" / "results"

# (file, line, character) of completion requests; a character is typed at each after the first.
PLACES = [
    ("scratch/fib.py", "def fib(n):\n    if n < 2:\n        return n\n    return \n", 3, 11),
    (
        "scratch/walk.py",
        "import os\n\n\ndef list_python_files(root):\n"
        '    """Return the paths of all .py files under root."""\n    paths = []\n    \n',
        6,
        4,
    ),
    (
        "scratch/stats.py",
        "def mean(values):\n    return sum(values) / len(values)\n\n\ndef median(values):\n"
        "    ordered = sorted(values)\n    \n",
        6,
        4,
    ),
    (
        "scratch/shapes.py",
        "class Rectangle:\n    def __init__(self, width, height):\n        self.width = width\n"
        "        self.height = height\n\n    def area(self):\n        return \n",
        6,
        15,
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(pid: int) -> dict[str, float]:
    """Peak RSS (VmHWM), RSS, PSS and private memory (USS) of one process, in MB."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Pss", "Private_Clean", "Private_Dirty"):
                out[key] = int(value.split()[0]) / 1024
        out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


class HttpServer:
    def __init__(self, model: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--n_ctx",
                    "4096",
                    "--n_threads",
                    "2",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-1500:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/v1/models", timeout=2),
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("llama_cpp.server did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def settings_for(backend: str, model: Path, url: str = "") -> dict[str, Any]:
    m: dict[str, Any] = {"name": str(model), "backend": backend, "daemonIdleSeconds": 2}
    if backend == "http":
        m["url"] = url
    # No time budget: on a busy machine it would cut generations at different points per backend.
    completion = {"warmup": False, "timeBudgetMs": 60000}
    return {"model": m, "completion": completion, "index": {"enabled": False}}


@contextlib.asynccontextmanager
async def windows(
    n: int, settings: dict[str, Any], home: Path, log: Path
) -> AsyncIterator[list[ServerSession]]:
    async with contextlib.AsyncExitStack() as stack:
        sessions = []
        for _ in range(n):
            sessions.append(
                await stack.enter_async_context(
                    serve(EXAMPLES, settings=settings, home=home, stderr_log=log, wait_index=False)
                )
            )
        yield sessions


async def complete(s: ServerSession, place: tuple[str, str, int, int]) -> dict[str, Any]:
    rel, text, line, ch = place
    uri = s.open(rel, text)
    first, first_ms = await s.inline(uri, line, ch)
    m1 = await s.last_metrics()
    # Not the completion's first character (that is served from the cache with no model call):
    # the model runs again, on a prompt whose prefix is cached.
    typed = "q" if (first or "").startswith("x") else "x"
    s.type(uri, line, ch, typed)
    _, second_ms = await s.inline(uri, line, ch + 1)
    m2 = await s.last_metrics()
    s.close(uri)
    return {
        "first_ms": first_ms,
        "typed_ms": second_ms,
        "first_server_ms": m1.get("total_ms", 0.0),
        "typed_server_ms": m2.get("total_ms", 0.0),
        "first_generated": m1.get("generated_tokens", 0),
        "typed_generated": m2.get("generated_tokens", 0),
        "typed_reused": m2.get("reused_tokens", 0),
        "text": first,
    }


def daemon_pids(home: Path) -> list[int]:
    os.environ["HUSHCODE_HOME"] = str(home)
    from lsp.model import daemon as d

    pids = []
    for sock in d._sockets():
        with contextlib.suppress(OSError):
            pids.append(int(d.query(sock)["pid"]))
    return pids


async def memory_run(
    backend: str, n: int, model: Path, work: Path, server: HttpServer | None
) -> dict[str, Any]:
    home = work / f"home-{backend}-{n}"
    settings = settings_for(backend, model, server.url if server else "")
    async with windows(n, settings, home, work / "serve.log") as sessions:
        await asyncio.gather(
            *(complete(s, PLACES[i % len(PLACES)]) for i, s in enumerate(sessions))
        )
        pids = [s.client._server.pid for s in sessions]  # type: ignore[attr-defined]
        per_window = [memory(p) for p in pids]
        extra = []
        if backend == "daemon":
            extra = [memory(p) for p in daemon_pids(home)]
        elif server is not None:
            extra = [memory(server.proc.pid)]
    procs = per_window + extra
    return {
        "backend": backend,
        "windows": n,
        "peak_rss_mb": sum(p.get("VmHWM", 0) for p in procs),
        "rss_mb": sum(p.get("VmRSS", 0) for p in procs),
        "pss_mb": sum(p.get("Pss", 0) for p in procs),
        "uss_mb": sum(p.get("Uss", 0) for p in procs),
        "window_peak_rss_mb": [round(p.get("VmHWM", 0)) for p in per_window],
        "shared_process_peak_rss_mb": [round(p.get("VmHWM", 0)) for p in extra],
    }


async def latency_runs(
    backends: list[str], model: Path, work: Path, server: HttpServer, rounds: int
) -> list[dict[str, Any]]:
    """One window per backend, open together; each request goes to every backend in turn, so
    that load from elsewhere on the machine falls on all of them alike."""
    rows: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    async with contextlib.AsyncExitStack() as stack:
        sessions = {}
        for b in backends:
            settings = settings_for(b, model, server.url)
            home = work / f"home-lat-{b}"
            (s,) = await stack.enter_async_context(windows(1, settings, home, work / "serve.log"))
            await complete(s, PLACES[0])  # not counted: cold caches
            sessions[b] = s
        for r in range(rounds):
            for rel, text, line, ch in PLACES:
                for b in backends:
                    rows[b].append(await complete(sessions[b], (f"r{r}-{rel}", text, line, ch)))
    results = []
    for b in backends:
        got = rows[b]
        results.append(
            {
                "backend": b,
                "requests": len(got),
                "first_p50_ms": statistics.median(r["first_ms"] for r in got),
                "typed_p50_ms": statistics.median(r["typed_ms"] for r in got),
                "first_mean_ms": statistics.fmean(r["first_ms"] for r in got),
                "typed_mean_ms": statistics.fmean(r["typed_ms"] for r in got),
                "typed_reused_mean": statistics.fmean(r["typed_reused"] for r in got),
                "generated_mean": statistics.fmean(r["first_generated"] for r in got),
                "ms_per_token": sum(r["first_ms"] + r["typed_ms"] for r in got)
                / max(1, sum(r["first_generated"] + r["typed_generated"] for r in got)),
                "texts": [r["text"] for r in got[: len(PLACES)]],
            }
        )
    return results


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def write_report(out: Path, data: dict[str, Any]) -> None:
    lines = [
        "# Many windows, one model",
        "",
        f"`python -m bench.multiwindow` — {data['date']}, {data['machine']}, "
        f"load average before/after: {data['load_before']} / {data['load_after']}.",
        f"Model: `{data['model']}` ({data['model_mb']:.0f} MB GGUF, memory-mapped).",
        "",
        "## Memory: 1 vs 3 windows",
        "",
        "Each window is a real `hushcode serve` that has served completions. Sums over the windows",
        "plus the shared process (daemon or `llama_cpp.server`). Peak RSS counts the memory-mapped",
        "model file again in every process that maps it; *private + model* is each process's",
        "private memory (USS) summed, plus the model file once: what the machine really spends",
        "(PSS would depend on other programs mapping the same file).",
        "",
        "| backend | windows | sum of peak RSS (MB) | private + model (MB) | per window peak RSS | "
        "shared process peak RSS |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in data["memory"]:
        real = r["uss_mb"] + data["model_mb"] / 1.048576
        lines.append(
            f"| {r['backend']} | {r['windows']} | {r['peak_rss_mb']:.0f} | {real:.0f} | "
            f"{r['window_peak_rss_mb']} | {r['shared_process_peak_rss_mb'] or '-'} |"
        )
    by = {(r["backend"], r["windows"]): r for r in data["memory"]}
    lines.append("")
    for backend in ("local", "daemon", "http"):
        one, three = by.get((backend, 1)), by.get((backend, 3))
        if one and three:
            rss = three["peak_rss_mb"] - one["peak_rss_mb"]
            uss = three["uss_mb"] - one["uss_mb"]
            lines.append(
                f"- {backend}: two more windows cost {rss:.0f} MB of peak RSS, {uss:.0f} MB of "
                "private memory."
            )
    lines += [
        "",
        "## Latency: the same requests through each backend",
        "",
        f"One window per backend, {data['latency'][0]['requests']} places each (4 snippets x "
        "rounds; the first request at a place, then one after typing a character the "
        "completion did not start with, so the model runs on a cached prompt prefix), taken "
        "in turn across the backends; "
        "round trip as the editor sees it, same GGUF, greedy. `http` is llama-cpp-python's "
        "`llama_cpp.server` on 127.0.0.1 (it keeps the last prompt's KV cache, as the in-process "
        "backend does).",
        "",
        "| backend | first request p50 (ms) | after typing p50 (ms) | first mean (ms) | "
        "after typing mean (ms) | tokens generated (mean) | ms per generated token | "
        "prompt tokens reused after typing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["latency"]:
        reused = f"{r['typed_reused_mean']:.0f}" if r["backend"] != "http" else "n/a"
        lines.append(
            f"| {r['backend']} | {r['first_p50_ms']:.0f} | {r['typed_p50_ms']:.0f} | "
            f"{r['first_mean_ms']:.0f} | {r['typed_mean_ms']:.0f} | {r['generated_mean']:.1f} | "
            f"{r['ms_per_token']:.0f} | {reused} |"
        )
    same = all(r["texts"] == data["latency"][0]["texts"] for r in data["latency"])
    lines += [
        "",
        f"Same completions on every backend: {'yes' if same else 'no (see the JSON)'}.",
        "",
        "The machine has 2 cores shared with other work (see the load average above): compare",
        "rows of one run, not runs. The in-process backend may also use prompt-lookup drafting",
        "(lsp/model/llama.py); the daemon decodes one token per step.",
        "",
    ]
    out.write_text("\n".join(lines))


async def main_async(args: argparse.Namespace) -> int:
    from lsp.model.manager import resolve_model

    model = Path(args.model) if args.model else resolve_model("qwen2.5-coder-0.5b-instruct")
    data: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "model": model.name,
        "model_mb": model.stat().st_size / 1e6,
        "load_before": load_average(),
        "memory": [],
        "latency": [],
    }
    with tempfile.TemporaryDirectory(prefix="hushcode-mw-") as tmp:
        work = Path(tmp)
        server = HttpServer(model, work / "llama_cpp_server.log")
        try:
            for backend in ("local", "daemon", "http"):
                for n in (1, 3):
                    r = await memory_run(
                        backend, n, model, work, server if backend == "http" else None
                    )
                    print(json.dumps(r), flush=True)
                    data["memory"].append(r)
                    await asyncio.sleep(3)  # the daemon leaves after its idle time
            data["latency"] = await latency_runs(
                ["local", "http", "daemon"], model, work, server, args.requests
            )
            for r in data["latency"]:
                print(json.dumps({k: v for k, v in r.items() if k != "texts"}), flush=True)
        finally:
            server.stop()
    data["load_after"] = load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(out, data)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2))
    print(f"wrote {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="GGUF (default: the default model)")
    ap.add_argument("--requests", type=int, default=2, help="rounds over the places")
    ap.add_argument("--out", default=str(RESULTS / "multiwindow-latest.md"))
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
