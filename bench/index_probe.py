"""Index one tree in a fresh process and print JSON: time, files, definitions, peak RSS.

    python -m bench.index_probe ROOT DB [--updates N]

Run it twice on the same DB: the first is a cold index, the second a warm restart (every file
unchanged on disk). `--updates N` then times N single-file updates: an editor buffer change
(`update_document`) and a file changed on disk (`disk_changed`), restoring each file afterwards.
A separate process per run, so `ru_maxrss` is this index's peak alone.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss survives exec and would show the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def db_mb(db: Path) -> float:
    total = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    return total / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("db", type=Path)
    ap.add_argument("--updates", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from lsp.index import WorkspaceIndex
    from lsp.index import languages as _languages

    for spec in _languages.LANGUAGES:  # grammars and queries loaded before the clock starts
        _ = spec.tags_query, spec.imports_query
    baseline = rss_mb()
    start = time.perf_counter()
    index = WorkspaceIndex(args.root, args.db)
    stats = index.index_all()
    seconds = time.perf_counter() - start
    out: dict[str, object] = {
        "seconds": round(seconds, 3),
        "files": stats.files_seen,
        "parsed": stats.parsed,
        "unchanged": stats.unchanged,
        "definitions": stats.definitions,
        "peak_rss_mb": round(rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
        "db_mb": round(db_mb(args.db), 1),
    }
    if args.updates:
        files = sorted(p for p in index.files() if p.endswith(".py"))
        picked = random.Random(args.seed).sample(files, min(args.updates, len(files)))
        buffer_ms, disk_ms = [], []
        visible = 0
        for rel in picked:
            path = args.root / rel
            original = path.read_text("utf-8")
            edited = original + "\n\ndef _bench_probe_function(x):\n    return x\n"
            t = time.perf_counter()
            index.update_document(path, original, "python")  # didOpen
            t = time.perf_counter()
            index.update_document(path, edited, "python")  # didChange: one edit
            buffer_ms.append((time.perf_counter() - t) * 1000)
            index.close_document(path)
            try:
                path.write_text(edited, "utf-8")
                t = time.perf_counter()
                index.disk_changed([path])
                disk_ms.append((time.perf_counter() - t) * 1000)
                visible += bool(index.definitions("_bench_probe_function"))
            finally:
                path.write_text(original, "utf-8")
                index.disk_changed([path])
        out["update_buffer_ms_p50"] = round(statistics.median(buffer_ms), 2)
        out["update_buffer_ms_max"] = round(max(buffer_ms), 2)
        out["update_disk_ms_p50"] = round(statistics.median(disk_ms), 2)
        out["update_disk_ms_max"] = round(max(disk_ms), 2)
        out["updates"] = len(picked)
        out["updates_visible"] = visible  # the new definition was found right after the update
        out["restored"] = not index.definitions("_bench_probe_function")
    index.stop()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
