"""`hushcode eval [PATH]`: how well, and how fast, the configured model fills holes in your code.

This module is the command line only, cheap to import (the CLI builds its parser on every run);
the work is in `lsp.eval.core`: mining holes, driving the completion engine in-process, scoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsp.config import Settings

DEFAULT_LIMIT = 50


def add_eval_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add `eval`; dispatch with `run_eval_command(args)`."""
    parser = subparsers.add_parser(
        "eval",
        help="measure completion accuracy and latency on your own repository",
        description=(
            "Mine holes (single-line statements in functions, every supported language) from a "
            "repository, fill them with the configured model and settings through the completion "
            "engine, and print accuracy (exact match, edit similarity) and latency (p50/p90)."
        ),
    )
    parser.add_argument("path", nargs="?", default=".", help="repository root (default: .)")
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"most holes (default {DEFAULT_LIMIT})"
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.add_argument("--model", default=None, help="model name or GGUF path (else settings)")
    parser.add_argument(
        "--settings",
        default=None,
        metavar="FILE|JSON",
        help="hushcode settings as the editor sends them (a JSON file or inline JSON)",
    )
    parser.add_argument("--seed", type=int, default=0, help="hole selection seed (default 0)")
    parser.add_argument(
        "--no-index", action="store_true", help="no repository context (index disabled)"
    )
    return parser


def _load_settings(raw: str | None) -> tuple[Settings, list[str]]:
    from lsp.config import Settings, parse_settings

    if not raw:
        return Settings(), []
    text = raw
    if not raw.lstrip().startswith("{"):
        text = Path(raw).expanduser().read_text("utf-8")
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("hushcode"), dict):
        data = data["hushcode"]
    return parse_settings(data)


def run_eval_command(args: argparse.Namespace) -> int:
    """Run `hushcode eval`; the result goes to stdout, progress and problems to stderr."""
    import asyncio

    from lsp.eval.core import ProgressBar, evaluate, format_report
    from lsp.model.backend import ModelError

    root = Path(getattr(args, "path", None) or ".")
    if not root.is_dir():
        print(f"hushcode eval: {root} is not a directory", file=sys.stderr)
        return 2
    if args.limit < 1:
        print("hushcode eval: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        settings, problems = _load_settings(getattr(args, "settings", None))
    except (OSError, ValueError) as exc:
        print(f"hushcode eval: cannot read the settings: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"hushcode eval: settings: {problem} (default kept)", file=sys.stderr)
    if getattr(args, "model", None):
        settings.model.name = args.model
    use_index = not getattr(args, "no_index", False)
    if not use_index:
        settings.index.enabled = False
    bar = ProgressBar(args.limit)
    try:
        report = asyncio.run(
            evaluate(
                root,
                settings,
                limit=args.limit,
                seed=getattr(args, "seed", 0),
                use_index=use_index,
                bar=bar,
            )
        )
    except ModelError as exc:
        print(f"hushcode eval: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nhushcode eval: interrupted", file=sys.stderr)
        return 130
    if report.holes == 0:
        print(
            f"hushcode eval: no holes found under {root} (no single-line statements inside "
            "functions in a supported language)",
            file=sys.stderr,
        )
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
        return 1
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point until `hushcode eval` is wired: `python -m lsp.eval [PATH] ...`."""
    parser = argparse.ArgumentParser(prog="hushcode")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    args = parser.parse_args(["eval", *(argv if argv is not None else sys.argv[1:])])
    return run_eval_command(args)
