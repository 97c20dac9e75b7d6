"""Decoding speed-ups on this machine: 0.5B and 1.5B, with and without them, in one run.

    python -m bench.decoding [--quick] [--out bench/results]

Systems: each model with plain greedy decoding (one token per evaluation) and with prompt lookup
(the product's default); the 1.5B also with the 0.5B drafting for it (speculative decoding). Every
request goes through the real completion engine in-process (FIM layout, repository context, stop
rules, post-processing), from an empty KV cache ("cold") and after one more typed character
("warm"). Accuracy: HumanEval single-line infilling and a repository-level set (real PyPI
packages, the callee's definition given as repository context), first line exact match. Systems
of one model run interleaved case by case, so load from other processes hits them alike.

Writes `<out>/decoding-latest.md` and `.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp.model.autoselect import (
    LATENCY_BUDGET_S,
    EngineProbe,
    Request,
    fingerprint,
    percentile,
    rss_mb,
)
from lsp.model.llama import LlamaModel, Speculation
from lsp.model.manager import installed_path, resolve_model

SMALL = "qwen2.5-coder-0.5b-instruct"
LARGE = "qwen2.5-coder-1.5b-instruct"
RESULTS = Path(__file__).resolve().parent / "results"
REPO_PACKAGES = ("click", "requests", "flask", "jinja2", "attrs", "pydantic", "black")


@dataclass(frozen=True)
class Case:
    set: str
    case_id: str
    path: str
    text: str
    offset: int
    expected: str
    context: tuple[tuple[str, str], ...] = ()


@dataclass
class Outcome:
    text: str | None
    cold_ms: float
    warm_ms: float
    generated: int
    generate_ms: float
    drafted: int
    accepted: int


@dataclass
class System:
    label: str
    model: str
    mode: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    generation: list[tuple[int, float, int, int]] = field(default_factory=list)
    """Long runs: (tokens, ms, drafted, accepted)."""
    rss_mb: float = 0.0
    load_s: float = 0.0


def first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0].strip()


def load_cases(quick: bool, seed: int) -> tuple[list[Case], list[str]]:
    from bench import humaneval

    notes: list[str] = []
    n_single, per_package, packages = (8, 1, REPO_PACKAGES[:3]) if quick else (40, 2, REPO_PACKAGES)
    cases = [
        Case("humaneval", c.task_id, c.path, c.text, c.offset, first_line(c.expected))
        for c in humaneval.select("single", n_single, seed)
    ]
    try:
        from bench import repo
    except ImportError as exc:  # pragma: no cover - bench/repo.py is another engineer's module
        notes.append(f"repository-level set unavailable: {exc}")
        return cases, notes
    for package in packages:
        version = repo.PACKAGES[package]
        try:
            root = repo.fetch(package, version)
            chosen = repo.select(root, package, per_package, seed)
        except Exception as exc:  # a missing wheel must not sink the whole run
            notes.append(f"{package} {version}: skipped ({exc})")
            continue
        for rc in chosen:
            cases.append(
                Case(
                    "repo",
                    rc.case_id,
                    rc.path,
                    rc.text,
                    rc.offset,
                    first_line(rc.expected),
                    ((rc.callee_path, rc.oracle),),
                )
            )
    return cases, notes


class Runner:
    """One loaded model, its engine, and the current case's repository context."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model
        self.context: list[tuple[str, str]] = []
        # No time budget: a loaded machine must not cut one system's completions and not another's.
        self.probe = EngineProbe(
            model, context=lambda _req: list(self.context), time_budget_ms=120_000
        )

    async def run_case(self, case: Case, spec: Speculation) -> Outcome:
        self.model.speculation = spec
        self.context = list(case.context)
        await self.probe.forget_cache()
        cold = await self.probe.complete(case.path, case.text, case.offset)
        typed_char = case.expected[:1] or " "
        typed = case.text[: case.offset] + typed_char + case.text[case.offset :]
        warm = await self.probe.complete(case.path, typed, case.offset + 1)
        return _outcome(cold, warm)


def _outcome(cold: Request, warm: Request) -> Outcome:
    return Outcome(
        text=cold.text,
        cold_ms=cold.total_ms,
        warm_ms=warm.total_ms,
        generated=cold.generated + warm.generated,
        generate_ms=cold.generate_ms + warm.generate_ms,
        drafted=cold.drafted + warm.drafted,
        accepted=cold.accepted + warm.accepted,
    )


def long_runs(model: LlamaModel, spec: Speculation, prompts: Sequence[list[int]]) -> list[Any]:
    """Decoding speed on longer outputs: 64 tokens after each prompt, no stop rule but EOS."""
    out = []
    model.speculation = spec
    for tokens in prompts:
        gen = model.generate(tokens, max_tokens=64)
        d = model.last_decode
        out.append((gen.stats.generated_tokens, gen.stats.generate_ms, d.drafted, d.accepted))
    return out


def long_prompts(model: LlamaModel, cases: Sequence[Case], n: int) -> list[list[int]]:
    """Plain FIM prompts (prefix, suffix, middle) of the first `n` cases."""
    out = []
    for case in cases[:n]:
        prefix = case.text[: case.offset]
        line_start = prefix.rfind("\n") + 1
        prompt = (
            f"<|fim_prefix|>{prefix[:line_start]}<|fim_suffix|>{case.text[case.offset :]}"
            f"<|fim_middle|>{prefix[line_start:]}"
        )
        out.append(model.tokenize(prompt, special=True)[-1500:])
    return out


async def bench_model(
    name: str,
    systems: list[tuple[System, Speculation]],
    cases: Sequence[Case],
    *,
    draft_for: System | None,
    n_long: int,
    progress: Any,
) -> None:
    before = rss_mb()
    start = time.perf_counter()
    model = LlamaModel(resolve_model(name), name=name, n_ctx=4096, n_threads=0)
    load_s = time.perf_counter() - start
    runner = Runner(model)
    draft: LlamaModel | None = None
    try:
        await runner.probe.start()
        warm_case = cases[0]
        await runner.probe.complete(warm_case.path, warm_case.text, warm_case.offset)
        alone = rss_mb() - before
        together = alone
        all_systems = list(systems)
        if draft_for is not None:
            draft = LlamaModel(resolve_model(SMALL), name=SMALL, n_ctx=4096, n_threads=0)
            draft.propose(model.tokenize(warm_case.text[:2000]), 4)  # touch its pages too
            together = rss_mb() - before
            all_systems.append((draft_for, Speculation(draft_model=draft)))
        for i, case in enumerate(cases):
            progress(f"{name}: case {i + 1}/{len(cases)} {case.case_id}")
            for system, spec in all_systems:
                system.outcomes[case.case_id] = await runner.run_case(case, spec)
        prompts = long_prompts(model, cases, n_long)
        for system, spec in all_systems:
            system.generation = long_runs(model, spec, prompts)
        for system, _ in systems:
            system.rss_mb, system.load_s = alone, load_s
        if draft_for is not None:
            draft_for.rss_mb, draft_for.load_s = together, load_s
    finally:
        runner.probe.close()
        if draft is not None:
            draft.close()


def summarise(system: System, plain: System | None, cases: dict[str, Case]) -> dict[str, Any]:
    outs = list(system.outcomes.values())
    cold = [o.cold_ms for o in outs]
    warm = [o.warm_ms for o in outs]
    gen = sum(o.generated for o in outs)
    gen_ms = sum(o.generate_ms for o in outs)
    drafted = sum(o.drafted for o in outs) + sum(g[2] for g in system.generation)
    accepted = sum(o.accepted for o in outs) + sum(g[3] for g in system.generation)
    long_tokens = sum(g[0] for g in system.generation)
    long_ms = sum(g[1] for g in system.generation)

    def exact(kind: str) -> tuple[int, int]:
        scored = [(cid, o) for cid, o in system.outcomes.items() if cases[cid].set == kind]
        hits = sum(first_line(o.text) == cases[cid].expected for cid, o in scored)
        return hits, len(scored)

    identical = None
    if plain is not None and plain is not system:
        same = sum(
            o.text == plain.outcomes[cid].text
            for cid, o in system.outcomes.items()
            if cid in plain.outcomes
        )
        identical = (same, len(system.outcomes))
    return {
        "label": system.label,
        "model": system.model,
        "mode": system.mode,
        "tokens_per_s": gen / gen_ms * 1000 if gen_ms else 0.0,
        "long_tokens_per_s": long_tokens / long_ms * 1000 if long_ms else 0.0,
        "acceptance": accepted / drafted if drafted else None,
        "drafted": drafted,
        "accepted": accepted,
        "cold_p50_ms": statistics.median(cold) if cold else 0.0,
        "cold_p90_ms": percentile(cold, 0.9),
        "warm_p50_ms": statistics.median(warm) if warm else 0.0,
        "warm_p90_ms": percentile(warm, 0.9),
        "humaneval": exact("humaneval"),
        "repo": exact("repo"),
        "identical_to_plain": identical,
        "rss_mb": system.rss_mb,
        "load_s": system.load_s,
    }


def _pct(pair: tuple[int, int]) -> str:
    hits, n = pair
    return f"{100 * hits / n:.1f} % ({hits}/{n})" if n else "-"


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Decoding speed-ups: 0.5B and 1.5B, with and without",
        "",
        f"Run {meta['date']} on {meta['cpu']} ({meta['cores']} cores, {meta['ram_gib']} GiB), "
        f"llama.cpp {meta['llama_cpp']}, {meta['mode']} mode, {meta['cases']} cases "
        f"({meta['humaneval']} HumanEval single-line, {meta['repo']} repository-level), "
        f"load average {meta['load_before']} before / {meta['load_after']} after, "
        f"{meta['seconds']:.0f} s. Generated by `python -m bench.decoding"
        f"{' --quick' if meta['mode'] == 'quick' else ''}`.",
        "",
        "| system | tok/s (completions) | tok/s (64-token runs) | acceptance | cold p50 / p90 "
        "| warm p50 / p90 | HumanEval 1-line EM | repo-level EM | same text as plain | RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = "-"
        if r["acceptance"] is not None:
            acc = f"{100 * r['acceptance']:.0f} % ({r['accepted']}/{r['drafted']})"
        same = "-" if r["identical_to_plain"] is None else "{}/{}".format(*r["identical_to_plain"])
        lines.append(
            f"| {r['label']} | {r['tokens_per_s']:.1f} | {r['long_tokens_per_s']:.1f} | {acc} "
            f"| {r['cold_p50_ms']:.0f} / {r['cold_p90_ms']:.0f} ms "
            f"| {r['warm_p50_ms']:.0f} / {r['warm_p90_ms']:.0f} ms "
            f"| {_pct(r['humaneval'])} | {_pct(r['repo'])} | {same} | {r['rss_mb']:.0f} MB |"
        )
    lines += [
        "",
        "- tok/s: generated tokens per second of decoding time (prompt evaluation excluded),",
        "  over every cold and warm request; the 64-token runs decode longer outputs of the same",
        "  prompts with no stop rule, where copying from the prompt has more room.",
        "- acceptance: drafted tokens that greedy decoding confirmed.",
        "- cold: empty KV cache; warm: the same hole after one more typed character (the engine's",
        "  total per request: prompt build, evaluation, generation, post-processing; no debounce).",
        "- EM: the first line of the completion equals the real line.",
        "- same text as plain: completions identical to the same model's plain greedy decoding.",
        "- RSS: resident memory added by the model(s) after use (the draft row: both models).",
        f'- `model: "auto"` picks the 1.5B when its warm p50 is within {LATENCY_BUDGET_S:g} s'
        " (measured by `hushcode model bench`).",
    ]
    for note in meta["notes"]:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decoding", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small set (< 10 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-draft", action="store_true", help="skip speculative decoding")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_before = _load()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    cases, notes = load_cases(args.quick, args.seed)
    by_id = {c.case_id: c for c in cases}
    progress(f"{len(cases)} cases")
    rows: list[dict[str, Any]] = []
    plan: list[tuple[str, bool]] = [(SMALL, False)]
    if installed_path(LARGE) is not None:
        plan.append((LARGE, not args.no_draft))
    else:
        notes.append(f"{LARGE} is not installed: its rows are missing")
    for name, with_draft in plan:
        short = "1.5B" if name == LARGE else "0.5B"
        plain = System(f"{short} plain greedy", name, "plain")
        lookup = System(f"{short} + prompt lookup", name, "lookup")
        draft = System(f"{short} + 0.5B draft model", name, "draft") if with_draft else None
        asyncio.run(
            bench_model(
                name,
                [(plain, Speculation(lookup=False)), (lookup, Speculation())],
                cases,
                draft_for=draft,
                n_long=3 if args.quick else 8,
                progress=progress,
            )
        )
        for system in (plain, lookup, draft):
            if system is not None:
                rows.append(summarise(system, plain, by_id))
    fp = fingerprint()
    meta = {
        **fp,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "cases": len(cases),
        "humaneval": sum(c.set == "humaneval" for c in cases),
        "repo": sum(c.set == "repo" for c in cases),
        "load_before": load_before,
        "load_after": _load(),
        "seconds": time.perf_counter() - started,
        "notes": notes,
        "python": platform.python_version(),
        "pid": os.getpid(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoding-latest.md").write_text(render(rows, meta), "utf-8")
    (args.out / "decoding-latest.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2), "utf-8"
    )
    print(render(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
