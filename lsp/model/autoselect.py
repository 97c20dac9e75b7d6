"""`model: "auto"` and `hushcode model bench`: the accurate model when this machine serves it fast.

`hushcode model bench` measures every installed registry model on this machine: load time, cold
and warm latency of single-line completions (through the real completion engine, on a fixed set of
holes in hushcode's own installed sources), and decoding speed. The result is cached in the
hushcode cache directory under a fingerprint of the hardware; `resolve_auto()` reads it and picks
the 1.5B when its warm p50 is within `LATENCY_BUDGET_S`, else the 0.5B. A changed fingerprint (new
CPU, cores, RAM, llama.cpp build) makes the cache stale: auto falls back to the 0.5B and says to
run the bench again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsp import __version__, paths
from lsp.model.backend import ModelError

log = logging.getLogger(__name__)

ACCURATE = "qwen2.5-coder-1.5b-instruct"
FAST = "qwen2.5-coder-0.5b-instruct"
LATENCY_BUDGET_S = 1.0
"""Auto picks the 1.5B when its warm p50 for a single-line completion (one more typed character,
the prompt's KV cache reused) is within this many seconds on this machine. Ghost text that takes
longer than about a second arrives after the user has typed on; the 0.5B is then the better deal."""
CACHE_FILE = "model-bench.json"
SCHEMA = 1
BENCH_FILES = (
    "completion/rules.py",
    "completion/layout.py",
    "completion/cache.py",
    "model/manager.py",
    "config.py",
    "paths.py",
)
"""hushcode's own installed sources: the fixed prompt set (present in every install)."""


# -- the fingerprint and the cache ---------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30))
    except (ValueError, OSError, AttributeError):
        return 0


def fingerprint() -> dict[str, Any]:
    """What decides the speed: the CPU, its cores, the RAM, and the llama.cpp build."""
    from lsp.model.llama import default_threads

    try:
        import llama_cpp

        llama_version = str(llama_cpp.__version__)
    except ImportError:  # pragma: no cover - the model extra is always installed
        llama_version = "none"
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": default_threads(),
        "cpus": os.cpu_count() or 0,
        "ram_gib": _ram_gib(),
        "llama_cpp": llama_version,
    }


def cache_path() -> Path:
    return paths.home() / CACHE_FILE


@dataclass
class ModelMeasurement:
    name: str
    load_s: float = 0.0
    cold_p50_ms: float = 0.0
    cold_p90_ms: float = 0.0
    warm_p50_ms: float = 0.0
    warm_p90_ms: float = 0.0
    tokens_per_s: float = 0.0
    """Generated tokens per second of decoding time (prompt evaluation excluded)."""
    rss_mb: float = 0.0
    """Resident memory added by loading and using the model."""
    requests: int = 0


@dataclass
class BenchResult:
    fingerprint: dict[str, Any]
    models: dict[str, ModelMeasurement] = field(default_factory=dict)
    measured_at: float = 0.0
    hushcode: str = __version__
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "models": {k: asdict(v) for k, v in self.models.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        models = {k: ModelMeasurement(**v) for k, v in dict(data.get("models") or {}).items()}
        return cls(
            fingerprint=dict(data["fingerprint"]),
            models=models,
            measured_at=float(data.get("measured_at", 0.0)),
            hushcode=str(data.get("hushcode", "")),
            schema=int(data.get("schema", 0)),
        )


def load_result(path: Path | None = None) -> BenchResult | None:
    """The cached measurement if it was taken on this hardware, else None (stale or absent)."""
    path = path or cache_path()
    try:
        result = BenchResult.from_json(json.loads(path.read_text("utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if result.schema != SCHEMA or result.fingerprint != fingerprint():
        return None
    return result


def save_result(result: BenchResult, path: Path | None = None) -> Path:
    path = path or cache_path()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(result.to_json(), indent=2))
    os.replace(tmp, path)
    return path


# -- the choice ---------------------------------------------------------------------------------


def choose(result: BenchResult | None, installed: Sequence[str]) -> tuple[str, str]:
    """The registry name auto loads, and why (for the log and `hushcode.status`)."""
    if ACCURATE not in installed:
        return FAST, f"{ACCURATE} is not installed"
    m = result.models.get(ACCURATE) if result is not None else None
    if m is None or m.requests == 0:
        return FAST, f"{ACCURATE} is not measured on this machine: run `hushcode model bench`"
    budget = LATENCY_BUDGET_S * 1000
    if m.warm_p50_ms <= budget:
        return ACCURATE, (
            f"{ACCURATE}: warm p50 {m.warm_p50_ms:.0f} ms is within the {budget:.0f} ms budget"
        )
    return FAST, f"{ACCURATE}: warm p50 {m.warm_p50_ms:.0f} ms exceeds the {budget:.0f} ms budget"


def installed_models() -> list[str]:
    from lsp.model.manager import installed_path, load_registry

    return [e.name for e in load_registry() if installed_path(e) is not None]


def resolve_auto() -> str:
    """The registry name `model: "auto"` stands for on this machine (no measuring here)."""
    name, why = choose(load_result(), installed_models())
    log.info("model auto: %s (%s)", name, why)
    return name


# -- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchCase:
    """A single-line hole: the cursor after `return ` on a real line; `rest` is what follows."""

    path: str
    text: str
    offset: int
    rest: str


def bench_cases(root: Path | None = None, per_file: int = 1) -> list[BenchCase]:
    """The fixed prompt set: the middle `return <expr>` line of each of BENCH_FILES."""
    root = root or Path(__file__).resolve().parent.parent
    cases: list[BenchCase] = []
    for rel in BENCH_FILES:
        try:
            text = (root / rel).read_text("utf-8")
        except OSError:
            continue
        lines = text.split("\n")
        starts = []
        pos = 0
        for line in lines:
            stripped = line.strip()
            if line.startswith("    ") and stripped.startswith("return ") and len(stripped) > 15:
                starts.append(pos + line.index("return ") + len("return "))
            pos += len(line) + 1
        if not starts:
            continue
        step = max(1, len(starts) // (per_file + 1))
        for k in range(per_file):
            offset = starts[min(len(starts) - 1, step * (k + 1))]
            end = text.find("\n", offset)
            rest = text[offset:end]
            cases.append(BenchCase(f"lsp/{rel}", text[:offset] + text[end:], offset, rest))
    return cases


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Request:
    """One completion as the engine served it."""

    text: str | None
    total_ms: float
    generated: int
    generate_ms: float
    reused: int
    drafted: int = 0
    accepted: int = 0


class EngineProbe:
    """The completion engine as the server runs it (no protocol, no debounce, no warm-up)."""

    def __init__(
        self,
        model: Any,
        *,
        context: Callable[[Any], list[tuple[str, str]]] | None,
        time_budget_ms: int | None = None,
    ) -> None:
        from lsp.completion.engine import CompletionEngine
        from lsp.completion.fim import load_templates
        from lsp.config import CompletionSettings
        from lsp.model.service import ModelService

        self.service = ModelService()
        settings = CompletionSettings(debounce_min_ms=0, debounce_max_ms=0, warmup=False)
        if time_budget_ms is not None:
            settings.time_budget_ms = time_budget_ms
        self.engine = CompletionEngine(self.service, load_templates(), settings, context=context)
        self.engine.repo_name = "workspace"
        self._model = model

    async def start(self) -> None:
        model = await self.service.load(lambda: self._model)
        warning = self.engine.model_ready(model.info)
        if warning:
            log.warning(warning)

    async def forget_cache(self) -> None:
        """Empty the KV cache (the next request is cold), through the model's own interface."""
        from lsp.model.service import CancelToken, Priority

        await self.service.run(
            Priority.COMPLETION, lambda m: m.evaluate([], lambda: False), CancelToken()
        )

    async def complete(
        self, path: str, text: str, offset: int, language: str = "python"
    ) -> Request:
        from lsp.completion.engine import CompletionRequest
        from lsp.model.service import CancelToken

        uri = f"file:///workspace/{path}"
        self.engine.cache.clear()  # every request reaches the model: latency, not the cache
        req = CompletionRequest(uri=uri, text=text, offset=offset, language_id=language, path=path)
        result = await self.engine.complete(req, CancelToken())
        m = self.engine.metrics.recent[-1]
        decode = getattr(self._model, "last_decode", None)
        return Request(
            text=result.text if result else None,
            total_ms=m.total_ms,
            generated=m.generated_tokens,
            generate_ms=m.generate_ms,
            reused=m.reused_tokens,
            drafted=getattr(decode, "drafted", 0),
            accepted=getattr(decode, "accepted", 0),
        )

    def close(self) -> None:
        self.service.close()


async def measure_model(
    name: str, cases: Sequence[BenchCase], *, repeats: int = 1, threads: int = 0
) -> ModelMeasurement:
    """Cold (empty cache) and warm (one typed character) latency of `name` on `cases`."""
    from lsp.model.llama import LlamaModel
    from lsp.model.manager import resolve_model

    path = resolve_model(name)
    before = rss_mb()
    start = time.perf_counter()
    model = LlamaModel(path, name=name, n_ctx=4096, n_threads=threads)
    load_s = time.perf_counter() - start
    probe = EngineProbe(model, context=None)
    cold: list[float] = []
    warm: list[float] = []
    generated = 0
    generate_ms = 0.0
    try:
        await probe.start()
        if cases:  # touch every weight page once: "cold" means a cold cache, not a cold disk
            await probe.complete(cases[0].path, cases[0].text, cases[0].offset)
        for _ in range(repeats):
            for case in cases:
                await probe.forget_cache()
                r = await probe.complete(case.path, case.text, case.offset)
                cold.append(r.total_ms)
                generated += r.generated
                generate_ms += r.generate_ms
                typed = case.text
                for i in range(min(2, len(case.rest))):
                    typed = typed[: case.offset + i] + case.rest[i] + typed[case.offset + i :]
                    r = await probe.complete(case.path, typed, case.offset + i + 1)
                    warm.append(r.total_ms)
                    generated += r.generated
                    generate_ms += r.generate_ms
        rss = rss_mb() - before
    finally:
        probe.close()
    return ModelMeasurement(
        name=name,
        load_s=load_s,
        cold_p50_ms=statistics.median(cold) if cold else 0.0,
        cold_p90_ms=percentile(cold, 0.9),
        warm_p50_ms=statistics.median(warm) if warm else 0.0,
        warm_p90_ms=percentile(warm, 0.9),
        tokens_per_s=generated / generate_ms * 1000 if generate_ms > 0 else 0.0,
        rss_mb=rss,
        requests=len(cold) + len(warm),
    )


def run_bench(
    names: Sequence[str], *, repeats: int = 1, progress: Callable[[str], None] | None = None
) -> BenchResult:
    result = BenchResult(fingerprint=fingerprint(), measured_at=time.time())
    cases = bench_cases()
    for name in names:
        if progress:
            progress(f"measuring {name} on {len(cases)} holes x {repeats}")
        result.models[name] = asyncio.run(measure_model(name, cases, repeats=repeats))
    return result


# -- `hushcode model bench` ----------------------------------------------------------------------


def add_bench_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add `bench` to the `model` subcommands; dispatch with `run_model_bench(args)`."""
    parser = sub.add_parser(
        "bench",
        help="measure the installed models' latency here (used by model: auto)",
        description=(
            "Measures load time, cold and warm single-line completion latency and decoding "
            "speed of each installed model on this machine, caches the result for "
            f'`model: "auto"` ({ACCURATE} when its warm p50 is within '
            f"{LATENCY_BUDGET_S:g} s, else {FAST})."
        ),
    )
    parser.add_argument("names", nargs="*", help="models to measure (default: all installed)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the holes (default 2)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def run_model_bench(args: argparse.Namespace) -> int:
    names = list(args.names) or installed_models()
    if not names:
        print(
            f"hushcode: no model is installed: run `hushcode model install {FAST}`", file=sys.stderr
        )
        return 1
    try:
        result = run_bench(
            names, repeats=max(1, args.repeats), progress=lambda s: print(s, file=sys.stderr)
        )
    except ModelError as e:
        print(f"hushcode: {e}", file=sys.stderr)
        return 1
    previous = load_result()
    if previous is not None:  # measuring one model keeps the others' numbers
        result.models = {**previous.models, **result.models}
    where = save_result(result)
    choice, why = choose(result, installed_models())
    if args.json:
        print(json.dumps({**result.to_json(), "auto": choice, "why": why}, indent=2))
        return 0
    print(format_result(result))
    print(f'\nmodel: "auto" -> {choice} ({why})')
    print(f"cached in {where}")
    return 0


def format_result(result: BenchResult) -> str:
    head = (
        f"{'MODEL':<30} {'LOAD':>6} {'COLD p50':>9} {'p90':>7} {'WARM p50':>9} {'p90':>7} "
        f"{'TOK/S':>6} {'RSS':>7}"
    )
    rows = [head]
    for m in result.models.values():
        rows.append(
            f"{m.name:<30} {m.load_s:5.1f}s {m.cold_p50_ms:7.0f}ms {m.cold_p90_ms:5.0f}ms "
            f"{m.warm_p50_ms:7.0f}ms {m.warm_p90_ms:5.0f}ms {m.tokens_per_s:6.1f} "
            f"{m.rss_mb:5.0f}MB"
        )
    fp = result.fingerprint
    rows.append(
        f"({fp['cpu']}, {fp['cores']} cores, {fp['ram_gib']} GiB, llama.cpp {fp['llama_cpp']})"
    )
    return "\n".join(rows)
