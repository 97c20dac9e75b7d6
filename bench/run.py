"""The benchmark: hushcode through its real server over stdio, side by side with llama-server.

    python -m bench.run [--quick | --smoke] [--out DIR] [--sections humaneval,repo,latency,index]

Writes `<out>/<timestamp>.md` and `.json`, and copies them to `latest.md` / `latest.json`.
Every case is run on hushcode and then on the peer (alternating), on the same machine, with the
same GGUF, threads and context size. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import humaneval, repo
from bench.lspclient import ServerSession, serve
from bench.peer import PeerServer, cached_binary
from lsp.eval.core import EngineRunner, edit_similarity, first_line, identifiers, mine_holes
from lsp.eval.core import percentile as pct

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
LLAMA_VERSION = "0.3.36"


@dataclass
class Config:
    mode: str
    single: int
    multi: int
    repo_per_package: int
    packages: list[str]
    latency_holes: int
    resolves: int
    rest_seconds: float
    budget_seconds: float
    hard_seconds: float
    """The run must end within this (a section's first case may use the time past the budget)."""
    index_tree: str
    """'django' or a package name from bench.repo.PACKAGES (smaller, for the smoke run)."""
    seed: int = 0
    sections: tuple[str, ...] = ("humaneval", "repo", "latency", "index")
    settings: dict[str, Any] = field(default_factory=dict)
    peer: bool = True
    smallest: bool = False
    """Repository cases from the smallest files (the smoke run: short prompts)."""


MODES: dict[str, dict[str, Any]] = {
    # make bench: < 30 minutes on 2 shared cores
    "full": dict(
        single=30,
        multi=20,
        repo_per_package=3,
        packages=list(repo.PACKAGES),
        latency_holes=8,
        resolves=2,
        rest_seconds=2.0,
        budget_seconds=26 * 60,
        hard_seconds=28 * 60,
        index_tree="django",
    ),
    # make bench-quick: < 5 minutes
    "quick": dict(
        single=2,
        multi=1,
        repo_per_package=1,
        packages=["click", "requests"],
        latency_holes=2,
        resolves=1,
        rest_seconds=2.0,
        budget_seconds=250,
        hard_seconds=280,
        index_tree="django",
    ),
    # tests/e2e/test_bench_smoke.py: the harness end to end, about a minute
    "smoke": dict(
        single=2,
        multi=1,
        repo_per_package=1,
        packages=["click"],
        latency_holes=1,
        resolves=1,
        rest_seconds=1.0,
        budget_seconds=75,
        hard_seconds=360,  # every section must run once: this is the harness check
        index_tree="click",
        smallest=True,
        settings={"completion": {"maxPromptTokens": 512, "contextTokens": 128}},
    ),
}
SHARES = {"humaneval": 0.30, "repo": 0.42, "latency": 0.22, "index": 0.06}
# Cheap sections first, the repository cases (the slowest: ~1,000-token cold prompts, five
# variants) last; every section gets its first case if that fits in the run's time.
EXEC_ORDER = ("index", "latency", "humaneval", "repo")


class Speed:
    """Prompt-evaluation speed seen so far on each side, to tell whether a big case still fits."""

    def __init__(self) -> None:
        self.tokens = {"hushcode": 0.0, "peer": 0.0}
        self.ms = {"hushcode": 0.0, "peer": 0.0}

    def record(self, side: str, tokens: float, ms: float) -> None:
        if tokens >= 16 and ms > 0:
            self.tokens[side] += tokens
            self.ms[side] += ms

    def per_second(self, side: str) -> float | None:
        return 1000 * self.tokens[side] / self.ms[side] if self.ms[side] else None

    def seconds(self, side: str, tokens: float) -> float:
        tps = self.per_second(side)
        return tokens / tps if tps else 0.0


SPEED = Speed()


class Clock:
    """Section deadlines from the run's budget; unused time passes on to the next section."""

    def __init__(self, budget: float, sections: Sequence[str], hard: float | None = None) -> None:
        self.start = time.monotonic()
        self.budget = budget
        self.hard = hard if hard is not None else budget
        """The limit a section's first case must still end within (the target run time)."""
        self.sections = list(sections)
        self.deadline = self.start
        self.truncated: dict[str, str] = {}

    def begin(self, section: str) -> None:
        rest = [s for s in self.sections[self.sections.index(section) :]]
        share = SHARES[section] / sum(SHARES[s] for s in rest)
        left = self.start + self.budget - time.monotonic()
        self.deadline = time.monotonic() + max(0.0, left) * share

    def over(self, done: int = 1) -> bool:
        """Past the section's deadline. A section's first case (`done` == 0) still runs while
        the run as a whole is within its budget, so that every table has a number."""
        now = time.monotonic()
        if done == 0:
            return now > self.start + self.hard
        return now > self.deadline

    def fits(self, estimate: float, done: int) -> bool:
        """Whether a case expected to take `estimate` seconds ends in time (see `over`)."""
        end = self.start + self.hard if done == 0 else self.deadline
        return time.monotonic() + estimate <= end

    def note(self, section: str, done: int, planned: int) -> None:
        if done < planned:
            self.truncated[section] = f"{done} of {planned} cases ran (time budget)"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def stat(values: Sequence[float]) -> dict[str, float]:
    vals = [float(v) for v in values]
    return {
        "n": len(vals),
        "median": round(statistics.median(vals), 2) if vals else 0.0,
        "p90": round(pct(vals, 0.9), 2) if vals else 0.0,
        "mean": round(statistics.fmean(vals), 4) if vals else 0.0,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


# -- shared pieces ---------------------------------------------------------------------------


@dataclass
class Context:
    config: Config
    run_dir: Path
    model_path: Path
    threads: int
    ctx: int
    settings: dict[str, Any]
    peer: PeerServer | None
    peer_note: str
    clock: Clock

    def server(self, root: Path, name: str, **overrides: Any) -> Any:
        settings = _merge(self.settings, overrides)
        return serve(
            root,
            settings=settings,
            home=self.run_dir / "home",
            stderr_log=self.run_dir / f"server-{name}.log",
        )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return line, len(text[start:offset].encode("utf-16-le")) // 2


async def hushcode_complete(
    s: ServerSession, rel: str, text: str, offset: int, language: str | None = None
) -> dict[str, Any]:
    uri = s.open(rel, text, language)
    line, char = _position(text, offset)
    try:
        completion, ms = await s.inline(uri, line, char)
        m = await s.last_metrics()
    finally:
        s.close(uri)
    SPEED.record("hushcode", m.get("evaluated_tokens", 0), m.get("eval_ms", 0.0))
    return {"text": completion, "ms": round(ms, 1), "metrics": _slim(m)}


def _slim(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "source",
        "total_ms",
        "prompt_tokens",
        "reused_tokens",
        "evaluated_tokens",
        "generated_tokens",
        "stop_reason",
        "context_files",
        "multiline",
        "debounce_ms",
        "queue_ms",
        "build_ms",
        "eval_ms",
        "generate_ms",
    )
    return {k: m.get(k) for k in keys if k in m}


async def peer_complete(
    ctx: Context, text: str, offset: int, extra: list[tuple[str, str]] | None = None
) -> dict[str, Any] | None:
    if ctx.peer is None:
        return None
    r = await asyncio.to_thread(ctx.peer.infill, text, offset, extra)
    SPEED.record("peer", r.evaluated_tokens, float(r.raw.get("timings/prompt_ms", 0) or 0))
    return {
        "text": r.text,
        "ms": round(r.ms, 1),
        "metrics": {
            "prompt_tokens": r.prompt_tokens,
            "evaluated_tokens": r.evaluated_tokens,
            "reused_tokens": r.reused_tokens,
            "generated_tokens": r.generated_tokens,
            "stop_type": r.stop_type,
            "truncated": r.truncated,
        },
    }


def _tokens(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r["metrics"].get(key, 0) or 0 for r in rows if r and r.get("metrics")]
    return round(float(statistics.median(vals)), 1) if vals else 0.0


# -- 1. HumanEval ------------------------------------------------------------------------------


def score_humaneval(case: humaneval.Case, out: dict[str, Any] | None) -> dict[str, Any] | None:
    if out is None:
        return None
    got = out["text"] or ""
    if case.kind == "single":
        es = edit_similarity(first_line(got), first_line(case.expected))
    else:
        es = edit_similarity(_norm_block(got), _norm_block(case.expected))
    return {
        **out,
        "exact": first_line(got) == first_line(case.expected),
        "edit_similarity": round(es, 4),
    }


def _norm_block(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n")).strip()


async def run_humaneval(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    single = humaneval.select("single", cfg.single, cfg.seed)
    multi = humaneval.select("multi", cfg.multi, cfg.seed)
    # interleaved, so that a run cut short by its time budget still has both kinds
    cases = [c for pair in itertools.zip_longest(single, multi) for c in pair if c is not None]
    sandbox = await asyncio.to_thread(humaneval.self_check)
    ws = ctx.run_dir / "humaneval-ws"
    ws.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    async with ctx.server(ws, "humaneval") as s:
        for i, case in enumerate(cases, 1):
            done = _kinds_done(rows, cases)
            estimate = SPEED.seconds("hushcode", 260) + SPEED.seconds("peer", 250) + 4
            if ctx.clock.over(done) or not ctx.clock.fits(estimate, done):
                break
            h = score_humaneval(case, await hushcode_complete(s, case.path, case.text, case.offset))
            p = score_humaneval(case, await peer_complete(ctx, case.text, case.offset))
            for r in (h, p):
                if r is not None:
                    ok, why = await asyncio.to_thread(
                        humaneval.run_program, case.program(r["text"])
                    )
                    r["passed"], r["exec"] = ok, why
            rows.append(
                {
                    "task_id": case.task_id,
                    "kind": case.kind,
                    "expected": case.expected,
                    "hushcode": h,
                    "peer": p,
                }
            )
            log(
                f"humaneval {i}/{len(cases)} {case.task_id}: hushcode "
                f"{'pass' if h and h['passed'] else 'fail'} {h['ms'] if h else 0:.0f} ms"
                + (f", peer {'pass' if p['passed'] else 'fail'} {p['ms']:.0f} ms" if p else "")
            )
    ctx.clock.note("humaneval", len(rows), len(cases))
    summary = {}
    for kind in ("single", "multi"):
        part = [r for r in rows if r["kind"] == kind]
        summary[kind] = _summarise_systems(part, ("hushcode", "peer"), with_pass=True)
    return {
        "sandbox": humaneval.sandbox_description(),
        "self_check": sandbox,
        "summary": summary,
        "cases": rows,
    }


def _kinds_done(rows: list[dict[str, Any]], cases: list[humaneval.Case]) -> int:
    """Cases run of the least-run kind among those planned (the clock waits for one of each)."""
    kinds = {c.kind for c in cases}
    return min(sum(r["kind"] == k for r in rows) for k in kinds) if kinds else len(rows)


def _summarise_systems(
    rows: list[dict[str, Any]], systems: Sequence[str], *, with_pass: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for name in systems:
        got = [r[name] for r in rows if r.get(name) is not None]
        if not got:
            out[name] = None
            continue
        entry: dict[str, Any] = {
            "n": len(got),
            "exact": round(sum(g["exact"] for g in got) / len(got), 4),
            "edit_similarity": round(statistics.fmean(g["edit_similarity"] for g in got), 4),
            "answered": round(sum(bool(g["text"]) for g in got) / len(got), 4),
            "latency_ms": stat([g["ms"] for g in got]),
            "prompt_tokens": _tokens(got, "prompt_tokens"),
            "evaluated_tokens": _tokens(got, "evaluated_tokens"),
            "reused_tokens": _tokens(got, "reused_tokens"),
            "generated_tokens": _tokens(got, "generated_tokens"),
        }
        if with_pass:
            entry["pass_at_1"] = round(sum(bool(g.get("passed")) for g in got) / len(got), 4)
        if "identifier_match" in got[0]:
            entry["identifier_match"] = round(sum(g["identifier_match"] for g in got) / len(got), 4)
            entry["callee_named"] = round(sum(g["callee_named"] for g in got) / len(got), 4)
            entry["context_files"] = _tokens(got, "context_files")
        sources: dict[str, int] = {}
        for g in got:
            src = g["metrics"].get("source") or g["metrics"].get("stop_type") or "?"
            sources[src] = sources.get(src, 0) + 1
        entry["sources"] = sources
        stops: dict[str, int] = {}
        for g in got:
            stop = g["metrics"].get("stop_reason") or g["metrics"].get("stop_type") or "?"
            stops[stop] = stops.get(stop, 0) + 1
        entry["stops"] = stops
        out[name] = entry
    return out


# -- 2. repository level -------------------------------------------------------------------------


def score_repo(case: repo.RepoCase, out: dict[str, Any] | None) -> dict[str, Any] | None:
    if out is None:
        return None
    got = first_line(out["text"])
    want = case.expected.strip()
    return {
        **out,
        "exact": got == want,
        "edit_similarity": round(edit_similarity(got, want), 4),
        "identifier_match": identifiers(got) == identifiers(want),
        "callee_named": re.search(rf"(?<![\w]){re.escape(case.callee)}\s*\(", got) is not None,
    }


REPO_SYSTEMS = ("hushcode_index", "hushcode_none", "hushcode_oracle", "peer", "peer_oracle")


async def run_repo(ctx: Context) -> dict[str, Any]:
    """Round r takes the r-th case of every package, so a run cut short still covers them all."""
    cfg = ctx.config
    base = ctx.run_dir / "work"
    rows: list[dict[str, Any]] = []
    packages: dict[str, Any] = {}
    chosen: dict[str, list[repo.RepoCase]] = {}
    for package in cfg.packages:
        version = repo.PACKAGES[package]
        src = await asyncio.to_thread(repo.fetch, package, version)
        chosen[package] = await asyncio.to_thread(
            repo.select, src, package, cfg.repo_per_package, cfg.seed, smallest=cfg.smallest
        )
        eligible = await asyncio.to_thread(repo.candidates, src, package)
        packages[package] = {"version": version, "candidates": eligible}
    planned = sum(len(c) for c in chosen.values())
    skipped = ""
    for r in range(cfg.repo_per_package):
        for package, cases in chosen.items():
            if r >= len(cases) or ctx.clock.over(len(rows)) or "error" in packages[package]:
                continue
            estimate = _repo_case_estimate(ctx)
            if not ctx.clock.fits(estimate, len(rows)):
                skipped = (
                    f"a case would take about {estimate:.0f} s at the prompt speed measured so far"
                    f" (hushcode {SPEED.per_second('hushcode') or 0:.0f} tokens/s, peer "
                    f"{SPEED.per_second('peer') or 0:.0f} tokens/s): past the time budget"
                )
                log(f"repo: {skipped}")
                break
            await _repo_round(ctx, package, cases[r], base, packages, rows)
        if skipped:
            break
    if skipped:
        ctx.clock.truncated["repo"] = f"{len(rows)} of {planned} cases ran; {skipped}"
    if not skipped:
        ctx.clock.note("repo", len(rows), max(planned, len(rows)))
    return {
        "packages": packages,
        "max_open_bytes": repo.MAX_OPEN_BYTES,
        "summary": _summarise_systems(rows, REPO_SYSTEMS),
        "cases": rows,
    }


def _repo_case_estimate(ctx: Context) -> float:
    """Three cold hushcode prompts at its full budget and two at the peer's (~1024 tokens),
    plus generation and server start-up; 0 when nothing has been measured yet."""
    budget = float(ctx.settings.get("completion", {}).get("maxPromptTokens", 1500)) * 0.75
    peer = SPEED.seconds("peer", 1030) * 2 if ctx.peer is not None else 0.0
    return 3 * SPEED.seconds("hushcode", budget) + peer + 20.0


async def _repo_round(
    ctx: Context,
    package: str,
    case: repo.RepoCase,
    base: Path,
    packages: dict[str, Any],
    rows: list[dict[str, Any]],
) -> None:
    """One case of one package: fresh work copy, two servers and the oracle engine."""
    version = repo.PACKAGES[package]
    work = await asyncio.to_thread(repo.workspace, package, version, base)
    oracle: list[tuple[str, str]] = []
    runner = EngineRunner(
        work,
        _settings_obj(ctx.settings),
        use_index=False,
        context=lambda req, given=oracle: list(given),
    )
    try:
        await runner.start()
        await _repo_package(ctx, package, work, [case], runner, oracle, rows)
    except Exception as exc:  # a wedged or crashed server: note it, go on with the next
        packages[package]["error"] = f"{type(exc).__name__}: {exc}"[:300]
        log(f"repo {package} failed: {packages[package]['error']}")
    finally:
        runner.close()
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _repo_package(
    ctx: Context,
    package: str,
    work: Path,
    cases: list[repo.RepoCase],
    runner: EngineRunner,
    oracle: list[tuple[str, str]],
    rows: list[dict[str, Any]],
) -> None:
    """Append one row per case to `rows` (kept when a server fails half-way)."""
    async with (
        ctx.server(work, f"repo-{package}-index") as with_index,
        ctx.server(work, f"repo-{package}-none", index={"enabled": False}) as without,
    ):
        for case in cases:
            if ctx.clock.over(len(rows)):
                break
            file = work / case.path
            file.write_text(case.text, encoding="utf-8")  # the hole, on disk too
            try:
                await asyncio.sleep(0.3)  # the watcher sees the file with its hole
                extra = [(case.callee_path, case.oracle)]
                row: dict[str, Any] = {
                    "case": case.case_id,
                    "expected": case.expected,
                    "callee": f"{case.callee_path}:{case.callee}",
                }
                row["hushcode_index"] = score_repo(
                    case, await hushcode_complete(with_index, case.path, case.text, case.offset)
                )
                row["peer"] = score_repo(case, await peer_complete(ctx, case.text, case.offset))
                row["hushcode_none"] = score_repo(
                    case, await hushcode_complete(without, case.path, case.text, case.offset)
                )
                row["peer_oracle"] = score_repo(
                    case, await peer_complete(ctx, case.text, case.offset, extra)
                )
                oracle[:] = extra
                o = await runner.complete(case.path, "python", case.text, case.offset)
                row["hushcode_oracle"] = score_repo(
                    case,
                    {"text": o.completion, "ms": round(o.wall_ms, 1), "metrics": _slim(o.metrics)},
                )
            finally:
                file.write_text(case.original, encoding="utf-8")
            rows.append(row)
            log(
                f"repo {case.case_id}: "
                + ", ".join(
                    f"{k} {'=' if row[k]['exact'] else 'x'} {row[k]['ms']:.0f} ms"
                    for k in REPO_SYSTEMS
                    if row.get(k)
                )
            )


def _settings_obj(wire: dict[str, Any]) -> Any:
    from lsp.config import parse_settings

    settings, problems = parse_settings(wire)
    if problems:
        log(f"settings problems: {problems}")
    return settings


# -- 3. latency --------------------------------------------------------------------------------


def _typed_char(expected: str, suggestion: str | None) -> str:
    """One character the user types next: the real one, unless the suggestion already starts
    with it (that would be typing-through, measured separately)."""
    want = expected[:1] or "x"
    if not (suggestion and suggestion.startswith(want)):
        return want
    return next(c for c in "xqz" if not suggestion.startswith(c))


async def run_latency(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    holes = mine_holes(EXAMPLES, limit=cfg.latency_holes, seed=cfg.seed, per_file=1)
    rows: list[dict[str, Any]] = []
    code_actions: dict[str, Any] = {"advertised": False}
    async with ctx.server(EXAMPLES, "latency") as s:
        for i, hole in enumerate(holes, 1):
            if ctx.clock.over(len(rows)):
                break
            row: dict[str, Any] = {"case": f"{hole.path}:{hole.line + 1}"}
            uri = s.open(hole.path, hole.text, hole.language)
            line, col = _position(hole.text, hole.offset)
            try:
                first, ms = await s.inline(uri, line, col)
                row["cold"] = {"ms": round(ms, 1), "metrics": _slim(await s.last_metrics())}
                char = _typed_char(hole.expected, first)
                s.type(uri, line, col, char)
                second, ms = await s.inline(uri, line, col + 1)
                row["warm"] = {"ms": round(ms, 1), "metrics": _slim(await s.last_metrics())}
                row["typed"] = char
                through: list[dict[str, Any]] = []
                col2 = col + 1
                for k in range(min(3, len(second or "") - 1)):
                    assert second is not None
                    s.type(uri, line, col2 + k, second[k])
                    _, ms = await s.inline(uri, line, col2 + k + 1)
                    through.append({"ms": round(ms, 1), "metrics": _slim(await s.last_metrics())})
                row["typing_through"] = through
            finally:
                s.close(uri)
            if ctx.peer is not None:
                cold = await peer_complete(ctx, hole.text, hole.offset)
                typed = hole.text[: hole.offset] + row["typed"] + hole.text[hole.offset :]
                warm = await peer_complete(ctx, typed, hole.offset + 1)
                row["peer_cold"], row["peer_warm"] = cold, warm
            rows.append(row)
            log(
                f"latency {i}/{len(holes)} {row['case']}: cold {row['cold']['ms']:.0f} ms, "
                f"warm {row['warm']['ms']:.0f} ms, typing-through "
                f"{[t['ms'] for t in row['typing_through']]}"
                + (
                    f"; peer cold {row['peer_cold']['ms']:.0f} ms, warm "
                    f"{row['peer_warm']['ms']:.0f} ms"
                    if row.get("peer_cold")
                    else ""
                )
            )
        # rested: open the file, leave the cursor alone (didOpen warm-up), then ask
        for row, hole in zip(rows, holes, strict=False):
            if ctx.clock.over(sum("rested" in r for r in rows)):
                break
            uri = s.open(hole.path, hole.text, hole.language)
            line, col = _position(hole.text, hole.offset)
            try:
                await asyncio.sleep(cfg.rest_seconds)
                _, ms = await s.inline(uri, line, col)
                row["rested"] = {"ms": round(ms, 1), "metrics": _slim(await s.last_metrics())}
            finally:
                s.close(uri)
        if s.has_code_actions:
            code_actions = await _code_actions(s, holes[: len(rows)], cfg.resolves, ctx.clock)
    ctx.clock.note("latency", len(rows), len(holes))
    return {"summary": _latency_summary(rows), "code_actions": code_actions, "cases": rows}


async def _code_actions(
    s: ServerSession, holes: list[Any], resolves: int, clock: Clock
) -> dict[str, Any]:
    listing: list[float] = []
    resolved: list[float] = []
    titles: set[str] = set()
    errors: list[str] = []
    for hole in holes:
        if clock.over(len(listing)):
            break
        text = await asyncio.to_thread((EXAMPLES / hole.path).read_text, "utf-8")
        uri = s.open(hole.path, text, hole.language)
        try:
            actions, ms = await s.code_actions(uri, (hole.line, 0), (hole.line, 0))
            listing.append(ms)
            titles.update(getattr(a, "title", "?") for a in actions)
            todo = [
                a
                for a in actions
                if getattr(a, "edit", None) is None and getattr(a, "data", None) is not None
            ]
            if todo and len(resolved) < resolves and s.resolves_code_actions:
                try:
                    _, rms = await s.resolve(todo[0])
                    resolved.append(rms)
                except Exception as exc:  # a failing resolve is a finding, not a crash
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            s.close(uri)
    return {
        "advertised": True,
        "resolve_provider": s.resolves_code_actions,
        "listing_ms": stat(listing),
        "resolve_ms": stat(resolved),
        "titles": sorted(titles),
        "errors": errors,
    }


def _latency_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def collect(key: str) -> list[dict[str, Any]]:
        return [r[key] for r in rows if r.get(key)]

    through = [t for r in rows for t in r.get("typing_through", [])]
    out: dict[str, Any] = {}
    for name, got in (
        ("cold", collect("cold")),
        ("warm", collect("warm")),
        ("typing_through", through),
        ("rested", collect("rested")),
        ("peer_cold", collect("peer_cold")),
        ("peer_warm", collect("peer_warm")),
    ):
        out[name] = {
            "ms": stat([g["ms"] for g in got]),
            "reused_tokens": _tokens(got, "reused_tokens"),
            "evaluated_tokens": _tokens(got, "evaluated_tokens"),
            "prompt_tokens": _tokens(got, "prompt_tokens"),
            "generated_tokens": _tokens(got, "generated_tokens"),
            "sources": _count(
                g["metrics"].get("source") or g["metrics"].get("stop_type") for g in got
            ),
        }
    return out


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


# -- 4. index ----------------------------------------------------------------------------------


async def run_index(ctx: Context) -> dict[str, Any]:
    name = ctx.config.index_tree
    version = repo.DJANGO[1] if name == "django" else repo.PACKAGES[name]
    root = await asyncio.to_thread(repo.fetch, name, version)
    db = ctx.run_dir / "index-probe.sqlite"
    await asyncio.to_thread(_remove_db, db)

    def probe(*extra: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.index_probe", str(root), str(db), *extra],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"index probe failed: {proc.stderr[-500:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    cold = await asyncio.to_thread(probe)
    warm = await asyncio.to_thread(probe, "--updates", "5", "--seed", str(ctx.config.seed))
    return {"tree": f"{name} {version}", "cold": cold, "warm": warm}


# -- the run -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO_ROOT
        ).stdout.strip()
        return head + (" (uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


async def run(config: Config, out_dir: Path, command: str) -> dict[str, Any]:
    from lsp.model.llama import default_threads
    from lsp.model.manager import resolve_model

    started = time.monotonic()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")  # noqa: UP017
    run_dir = repo.cache_dir() / "runs" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    model_name = os.environ.get("BENCH_MODEL", "qwen2.5-coder-0.5b-instruct")
    model_path = await asyncio.to_thread(resolve_model, model_name)
    threads_setting = int(config.settings.get("model", {}).get("threads", 0) or 0)
    threads = threads_setting or default_threads()
    n_ctx = int(config.settings.get("model", {}).get("contextSize", 4096))
    settings = _merge(
        {"model": {"name": str(model_path)}, "actions": {"timeBudgetMs": 15000}}, config.settings
    )
    peer: PeerServer | None = None
    peer_note = ""
    binary = cached_binary(LLAMA_VERSION)
    if not config.peer:
        peer_note = "peer disabled (--no-peer)"
    elif binary is None:
        peer_note = (
            f"peer skipped: no cached llama-server {LLAMA_VERSION} for this CPU "
            "(run `make bench-peer` once, about 8 minutes on 2 cores)"
        )
    else:
        peer = PeerServer(
            binary, model_path, threads=threads, ctx=n_ctx, log_path=run_dir / "peer.log"
        )
        await asyncio.to_thread(peer.start)
        peer_note = f"llama-server ready in {peer.load_seconds:.1f} s"
    log(peer_note)
    order = [s for s in EXEC_ORDER if s in config.sections]
    clock = Clock(config.budget_seconds, order, config.hard_seconds)
    ctx = Context(config, run_dir, model_path, threads, n_ctx, settings, peer, peer_note, clock)
    result: dict[str, Any] = {
        "meta": {
            "timestamp": stamp,
            "mode": config.mode,
            "command": command,
            "git": git_state(),
            "machine": machine(),
            "model": {
                "name": model_name,
                "path": str(model_path),
                "bytes": model_path.stat().st_size,
            },
            "threads": threads,
            "context_size": n_ctx,
            "hushcode_settings": settings,
            "peer": {
                "binary": str(binary) if binary else None,
                "command": peer.command if peer else None,
                "note": peer_note,
                "version": _peer_version(binary) if binary else None,
            },
            "seed": config.seed,
            "run_dir": str(run_dir),
        }
    }
    sections: dict[str, Callable[[Context], Any]] = {
        "humaneval": run_humaneval,
        "repo": run_repo,
        "latency": run_latency,
        "index": run_index,
    }
    try:
        for name in order:
            clock.begin(name)
            log(f"section {name} (deadline in {clock.deadline - time.monotonic():.0f} s)")
            t0 = time.monotonic()
            try:
                result[name] = await sections[name](ctx)
            except Exception as exc:
                log(f"section {name} failed: {type(exc).__name__}: {exc}")
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            result[name]["seconds"] = round(time.monotonic() - t0, 1)
    finally:
        if peer is not None:
            peer.stop()
    result["meta"]["seconds"] = round(time.monotonic() - started, 1)
    result["meta"]["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    result["meta"]["truncated"] = clock.truncated
    await asyncio.to_thread(write_results, result, out_dir, stamp)
    log(f"wrote {out_dir / (stamp + '.md')} in {result['meta']['seconds']:.0f} s")
    return result


def write_results(result: dict[str, Any], out_dir: Path, stamp: str) -> None:
    from bench.report import markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / f"{stamp}.md").write_text(markdown(result))
    shutil.copyfile(out_dir / f"{stamp}.json", out_dir / "latest.json")
    shutil.copyfile(out_dir / f"{stamp}.md", out_dir / "latest.md")


def _peer_version(binary: Path) -> str:
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=20
        )
        text = proc.stdout + proc.stderr
        m = re.search(r"version: (.+)", text)
        return m.group(1).strip() if m else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="a few cases (< 5 minutes)")
    group.add_argument("--smoke", action="store_true", help="the CI smoke run (about a minute)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    ap.add_argument("--sections", default=",".join(Config.sections))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument(
        "--settings", default=None, help="extra hushcode settings (JSON), merged over defaults"
    )
    ap.add_argument("--budget", type=float, default=None, help="override the time budget (s)")
    for key in ("single", "multi", "repo-per-package", "latency-holes"):
        ap.add_argument(f"--{key}", type=int, default=None)
    ap.add_argument("--packages", default=None, help="comma-separated, from bench/repo.py")
    args = ap.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    values = dict(MODES[mode])
    for key in ("single", "multi", "repo_per_package", "latency_holes"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.packages:
        values["packages"] = [p for p in args.packages.split(",") if p]
    if args.budget:
        values["budget_seconds"] = args.budget
        values["hard_seconds"] = args.budget * 1.12
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = set(sections) - set(SHARES)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    mode_settings = values.pop("settings", {})
    config = Config(
        mode=mode,
        seed=args.seed,
        sections=sections,
        settings=_merge(mode_settings, json.loads(args.settings) if args.settings else {}),
        peer=not args.no_peer,
        **values,
    )
    command = os.environ.get("BENCH_COMMAND") or "python -m bench.run " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    asyncio.run(run(config, args.out, command.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
