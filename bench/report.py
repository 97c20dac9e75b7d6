"""The markdown report of one benchmark run (the JSON next to it has every case)."""

from __future__ import annotations

from typing import Any


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _num(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "–"
    if b == 0:
        return "∞" if a else "–"
    return f"{a / b:.2f}"


def _overrides(settings: dict[str, Any]) -> str:
    import json

    rest = {k: v for k, v in settings.items() if k != "model"}
    model = {k: v for k, v in settings.get("model", {}).items() if k != "name"}
    if model:
        rest["model"] = model
    return json.dumps(rest, separators=(",", ":"))


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def markdown(r: dict[str, Any]) -> str:
    meta = r["meta"]
    m = meta["machine"]
    lines = [
        f"# hushcode benchmark: {meta['mode']} run, {meta['timestamp']} UTC",
        "",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}; "
        f"load average {m['load_start'][0]} at the start, {m.get('load_end', ['?'])[0]} at the end"
        " (the CPU is shared: numbers are noisy).",
        f"- **Command**: `{meta['command']}` (git {meta['git']}), {meta['seconds']:.0f} s.",
        f"- **Model**: {meta['model']['name']} ({meta['model']['bytes'] / 1e6:.0f} MB GGUF), "
        f"{meta['threads']} threads, context {meta['context_size']}, for both systems.",
        "- **hushcode**: the real server (`python -m lsp serve`) over stdio, default settings "
        "(prompt budget 1500 tokens, 400 of them repository context; greedy decoding) except: "
        f"`{_overrides(meta.get('hushcode_settings', {}))}`.",
    ]
    peer = meta["peer"]
    if peer.get("command"):
        lines.append(
            f"- **Peer**: llama.cpp `llama-server` {peer.get('version')} built from the "
            "llama-cpp-python sdist, on 127.0.0.1, flags `"
            + " ".join(peer["command"][peer["command"].index("-c") :])
            + "`, driven with llama.vim's `/infill` request (256 lines prefix, 64 suffix, "
            "`n_indent`, `t_max_predict_ms` 1000, n_predict 128; top_k 1 for greedy decoding) "
            "and llama.vim's client-side clean-up. Cases alternate hushcode/peer."
        )
    else:
        lines.append(f"- **Peer**: {peer.get('note')}")
    lines.append(
        "- **Ratios** are hushcode ÷ peer: above 1 is better for accuracy, below 1 is better "
        "(faster) for latency."
    )
    if meta.get("truncated"):
        for section, why in meta["truncated"].items():
            lines.append(f"- **{section}** was cut short: {why}.")
    lines.append("")
    lines += _humaneval(r.get("humaneval"))
    lines += _repo(r.get("repo"))
    lines += _latency(r.get("latency"))
    lines += _index(r.get("index"))
    lines.append(
        "Per-case data (prompts' token counts, completions, stop reasons) is in the JSON next to "
        "this file."
    )
    return "\n".join(lines) + "\n"


def _error(section: dict[str, Any] | None) -> list[str]:
    if section is None:
        return ["(not run)", ""]
    if "error" in section:
        return [f"**failed**: {section['error']}", ""]
    return []


def _humaneval(h: dict[str, Any] | None) -> list[str]:
    out = ["## 1. HumanEval infilling (public anchor)", ""]
    if err := _error(h):
        return out + err
    assert h is not None
    for kind, title in (("single", "single-line"), ("multi", "multi-line (2-6 lines)")):
        s = h["summary"][kind]
        hc, pe = s.get("hushcode"), s.get("peer")
        out.append(f"**{title}**, n = {s['n']}")
        out.append("")
        rows = []
        for label, key, fmt in (
            ("first-line exact match", "exact", _pct),
            ("edit similarity (mean)", "edit_similarity", _num),
            ("pass@1 (executed)", "pass_at_1", _pct),
            ("answered (non-empty)", "answered", _pct),
        ):
            a, b = _get(hc, key), _get(pe, key)
            rows.append([label, fmt(a), fmt(b), _ratio(a, b)])
        for label, q in (("latency p50 (ms)", "median"), ("latency p90 (ms)", "p90")):
            a, b = _get(hc, "latency_ms", q), _get(pe, "latency_ms", q)
            rows.append([label, _ms(a), _ms(b), _ratio(a, b)])
        for label, key in (
            ("prompt tokens (median)", "prompt_tokens"),
            ("evaluated tokens (median)", "evaluated_tokens"),
            ("generated tokens (median)", "generated_tokens"),
        ):
            a, b = _get(hc, key), _get(pe, key)
            rows.append([label, _ms(a), _ms(b), _ratio(a, b)])
        out += _table(["metric", "hushcode", "peer", "hushcode/peer"], rows)
        if hc:
            out.append("")
            out.append(f"hushcode results by source: {hc['sources']}; stops: {hc['stops']}")
        out.append("")
    sc = h.get("self_check", {})
    out.append(
        f"Sandbox: {h['sandbox']}; self-check: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in sc.items())
        + "."
    )
    out.append("")
    return out


def _repo(rp: dict[str, Any] | None) -> list[str]:
    out = ["## 2. Repository level (real PyPI packages)", ""]
    if err := _error(rp):
        return out + err
    assert rp is not None
    s = rp["summary"]
    pk = ", ".join(
        f"{k} {v['version']} ({v['candidates']} candidates)" for k, v in rp["packages"].items()
    )
    out.append(
        f"n = {s['n']} cases from {pk}. A case is a single-line statement in a function that "
        "calls a function defined in another module of the package; the statement is removed "
        "from the file on disk and in the editor buffer (indentation kept, cursor after it)."
    )
    out.append("")
    systems = [
        ("hushcode_index", "hushcode + index"),
        ("hushcode_none", "hushcode, no context"),
        ("hushcode_oracle", "hushcode + oracle"),
        ("peer", "peer (no extra)"),
        ("peer_oracle", "peer + oracle"),
    ]
    head = ["metric", *[t for _, t in systems], "index/peer", "none/peer", "oracle/peer+oracle"]
    rows = []

    def row(label: str, get: Any, fmt: Any) -> None:
        vals = {k: get(s.get(k)) for k, _ in systems}
        rows.append(
            [
                label,
                *[fmt(vals[k]) for k, _ in systems],
                _ratio(vals["hushcode_index"], vals["peer"]),
                _ratio(vals["hushcode_none"], vals["peer"]),
                _ratio(vals["hushcode_oracle"], vals["peer_oracle"]),
            ]
        )

    row("exact match (first line)", lambda e: _get(e, "exact"), _pct)
    row("edit similarity (mean)", lambda e: _get(e, "edit_similarity"), _num)
    row("identifier match", lambda e: _get(e, "identifier_match"), _pct)
    row("callee named", lambda e: _get(e, "callee_named"), _pct)
    row("answered (non-empty)", lambda e: _get(e, "answered"), _pct)
    row("latency p50 (ms)", lambda e: _get(e, "latency_ms", "median"), _ms)
    row("latency p90 (ms)", lambda e: _get(e, "latency_ms", "p90"), _ms)
    row("prompt tokens (median)", lambda e: _get(e, "prompt_tokens"), _ms)
    row("context files (median)", lambda e: _get(e, "context_files"), _num)
    out += _table(head, rows)
    out.append("")
    out.append(
        "Oracle: the callee's `def` line(s) and docstring, given as one context file (hushcode: "
        "the engine in-process with that as its repository context; peer: `input_extra`). "
        "The peer gets no other extra context: llama.vim's ring buffer is empty in a fresh editor."
    )
    for key, title in systems:
        e = s.get(key)
        if e and key.startswith("hushcode"):
            out.append(f"- {title}: sources {e['sources']}; stops {e['stops']}")
    out.append("")
    return out


def _latency(lat: dict[str, Any] | None) -> list[str]:
    out = ["## 3. Latency through the real server (examples/ workspace)", ""]
    if err := _error(lat):
        return out + err
    assert lat is not None
    s = lat["summary"]
    rows = []
    for label, h, p in (
        ("cold: first request in a file", "cold", "peer_cold"),
        ("warm: same line, one typed character", "warm", "peer_warm"),
        ("typing-through: typed the suggestion's next characters", "typing_through", None),
        ("rested: didOpen, idle 2 s (warm-up), then the request", "rested", None),
    ):
        a, b = s.get(h), s.get(p) if p else None
        rows.append(
            [
                label,
                str(_get(a, "ms", "n") or 0),
                _ms(_get(a, "ms", "median")),
                _ms(_get(a, "ms", "p90")),
                _ms(_get(b, "ms", "median")) if b else "n/a",
                _ms(_get(b, "ms", "p90")) if b else "n/a",
                _ratio(_get(a, "ms", "median"), _get(b, "ms", "median")) if b else "–",
                _ratio(_get(a, "ms", "p90"), _get(b, "ms", "p90")) if b else "–",
                f"{_ms(_get(a, 'reused_tokens'))} / {_ms(_get(a, 'evaluated_tokens'))}",
                f"{_ms(_get(b, 'reused_tokens'))} / {_ms(_get(b, 'evaluated_tokens'))}"
                if b
                else "n/a",
            ]
        )
    ca = lat.get("code_actions", {})
    for label, key in (
        ("code-action listing", "listing_ms"),
        ("code-action resolve", "resolve_ms"),
    ):
        if ca.get("advertised") and _get(ca, key, "n"):
            v = ca[key]
            rows.append(
                [
                    label,
                    str(v["n"]),
                    _ms(v["median"]),
                    _ms(v["p90"]),
                    "n/a",
                    "n/a",
                    "–",
                    "–",
                    "–",
                    "n/a",
                ]
            )
        else:
            why = "n/a (not advertised)" if not ca.get("advertised") else "n/a (none to resolve)"
            rows.append([label, "0", why, "", "n/a", "n/a", "–", "–", "–", "n/a"])
    out += _table(
        [
            "measure",
            "n",
            "hushcode p50 ms",
            "p90",
            "peer p50 ms",
            "p90",
            "ratio p50",
            "ratio p90",
            "hushcode tokens reused / evaluated (median)",
            "peer reused / evaluated",
        ],
        rows,
    )
    out.append("")
    cold_src = _get(s, "cold", "sources")
    warm_src = _get(s, "warm", "sources")
    tt_src = _get(s, "typing_through", "sources")
    out.append(
        f"Sources (model | cache | empty ...): cold {cold_src}, warm {warm_src}, "
        f"typing-through {tt_src}. The peer's typing-through is llama.vim's client-side cache "
        "(no server request), so it has no server latency to compare."
    )
    if ca.get("errors"):
        out.append(f"Code-action errors: {ca['errors']}")
    out.append("")
    return out


def _index(ix: dict[str, Any] | None) -> list[str]:
    out = ["## 4. Index", ""]
    if err := _error(ix):
        return out + err
    assert ix is not None
    c, w = ix["cold"], ix["warm"]
    out.append(
        f"`lsp.index.WorkspaceIndex` in a fresh subprocess per measurement, on {ix['tree']} "
        f"sources from PyPI ({c['files']} indexable files, {c['definitions']} definitions)."
    )
    out.append("")
    rows = [
        ["cold index (s)", f"{c['seconds']:.2f}"],
        [
            "peak RSS, cold (MB)",
            f"{c['peak_rss_mb']:.0f} (process baseline {c['baseline_rss_mb']:.0f})",
        ],
        ["database size (MB)", f"{c['db_mb']:.1f}"],
        ["warm restart (s, all files unchanged)", f"{w['seconds']:.3f} ({w['parsed']} parsed)"],
        ["peak RSS, warm (MB)", f"{w['peak_rss_mb']:.0f}"],
        [
            "one file's update, editor buffer (ms, p50 / max)",
            f"{w.get('update_buffer_ms_p50', 0):.1f} / {w.get('update_buffer_ms_max', 0):.1f}",
        ],
        [
            "one file's update, changed on disk (ms, p50 / max)",
            f"{w.get('update_disk_ms_p50', 0):.1f} / {w.get('update_disk_ms_max', 0):.1f}",
        ],
        ["updates visible at once", f"{w.get('updates_visible', 0)}/{w.get('updates', 0)}"],
    ]
    out += _table(["measure", "value"], rows)
    out.append("")
    return out
