"""The `hushcode` command: `serve` (the language server), `model ...` (model management)."""

from __future__ import annotations

import argparse
import io
import ipaddress
import os
import sys
from typing import BinaryIO

from lsp import __version__


def _parse_tcp(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hushcode", description="A private, offline coding assistant (LSP server)."
    )
    parser.add_argument("--version", action="version", version=f"hushcode {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    serve.add_argument(
        "--tcp", type=_parse_tcp, metavar="HOST:PORT", help="listen on TCP (debugging)"
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --tcp on a non-loopback address (code would then cross the network)",
    )
    serve.add_argument("--stdio", action="store_true", help="use stdin/stdout (the default)")
    serve.add_argument("--log-level", default=None, help="debug | info | warning | error")
    serve.add_argument("--log-file", default=None, help="also write the log here")
    try:
        from lsp.model.manager_cli import add_model_parser
    except ImportError:  # pragma: no cover - during development only
        pass
    else:
        add_model_parser(sub)
    from lsp.eval import add_eval_parser
    from lsp.model.daemon import add_daemon_parser

    add_daemon_parser(sub)
    add_eval_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "serve"):
        return serve(args)
    if args.command == "model":
        from lsp.model.manager_cli import run_model_command

        return run_model_command(args)
    if args.command == "eval":
        from lsp.eval import run_eval_command

        return run_eval_command(args)
    if args.command == "daemon":
        from lsp.model.daemon import run_daemon_command

        return run_daemon_command(args)
    parser.print_help(sys.stderr)
    return 2


def serve(args: argparse.Namespace) -> int:
    from lsp import log

    log.setup(getattr(args, "log_level", None) or "info", getattr(args, "log_file", None))
    from lsp.server import server

    server.cli_log_level = getattr(args, "log_level", None)  # the command line wins over settings

    tcp = getattr(args, "tcp", None)
    if tcp:
        host, port = tcp
        if not _is_loopback(host) and not args.allow_remote:
            print(
                f"hushcode: refusing to listen on {host}: not a loopback address. "
                "Use 127.0.0.1, or pass --allow-remote if you really mean it.",
                file=sys.stderr,
            )
            return 2
        server.start_tcp(host, port)
    else:
        stdin, stdout = _private_stdio()
        server.start_io(stdin, stdout)
    return 0


def _private_stdio() -> tuple[BinaryIO, BinaryIO]:
    """The protocol gets its own copies of fds 0 and 1; fd 1 then points at stderr.

    Native code (llama.cpp, or llama-cpp-python silencing it by redirecting fds 1 and 2) must never
    write into, or swallow, the JSON-RPC stream.
    """
    proto_in = _ProtocolInput(io.FileIO(os.dup(0), "r"))
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto_in, proto_out


class _ProtocolInput(io.BufferedReader):
    """The protocol's stdin. Buffered: pygls reads a body with one `read(n)`, and a raw read from a
    pipe returns what is there, often less than a large message. Bounded: a Content-Length no
    editor sends would be allocated at once and kill the server; it reads as a parse error instead
    and the reader looks for the next header.
    """

    MAX_BODY = 1 << 30
    MAX_LINE = 1 << 16

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > self.MAX_BODY:
            return b" "
        return super().read(size)

    def readline(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0 or size > self.MAX_LINE:
            size = self.MAX_LINE
        return super().readline(size)
