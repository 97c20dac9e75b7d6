"""A network guard, loaded by Python at start-up when this folder is on PYTHONPATH.

Every connection that is not to loopback or a Unix socket fails loudly, and each attempt is written
to `$HUSHCODE_NET_GUARD_LOG` with a stack. Name lookups of anything but localhost count as attempts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import traceback
from typing import Any

_LOG = os.environ.get("HUSHCODE_NET_GUARD_LOG", "")


def _write(line: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(line)


class NetworkBlocked(PermissionError):
    """A non-loopback connection was attempted under the test's network guard."""


def loopback_host(host: Any) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): the local host
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = str(host).strip("[]").lower()
    if name in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def allowed(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", -1) or family == getattr(socket, "AF_NETLINK", -2):
        return True
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        return loopback_host(address[0])
    return False


def _block(what: str) -> None:
    stack = "".join(traceback.format_stack(limit=12)[:-2])
    _write(f"blocked pid={os.getpid()} {what}\n{stack}\n")
    raise NetworkBlocked(f"network guard: {what} is not loopback")


def _install() -> None:
    cls = socket.socket
    connect, connect_ex, sendto = cls.connect, cls.connect_ex, cls.sendto
    sendmsg = getattr(cls, "sendmsg", None)
    getaddrinfo, gethostbyname = socket.getaddrinfo, socket.gethostbyname
    gethostbyname_ex = socket.gethostbyname_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not allowed(self.family, address):
            _block(f"connect({self.family!r}, {address!r})")
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self.family, address):
            _block(f"connect_ex({self.family!r}, {address!r})")
        return connect_ex(self, address)

    def guarded_sendto(self: socket.socket, data: Any, *args: Any) -> int:
        address = args[-1] if args else None
        if not allowed(self.family, address):
            _block(f"sendto({self.family!r}, {address!r})")
        return sendto(self, data, *args)

    def guarded_sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
        address = args[2] if len(args) > 2 else None
        if address is not None and not allowed(self.family, address):
            _block(f"sendmsg({self.family!r}, {address!r})")
        assert sendmsg is not None
        return sendmsg(self, buffers, *args)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not loopback_host(host):
            _block(f"getaddrinfo({host!r})")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_gethostbyname(host: str) -> str:
        if not loopback_host(host):
            _block(f"gethostbyname({host!r})")
        return gethostbyname(host)

    def guarded_gethostbyname_ex(host: str) -> Any:
        if not loopback_host(host):
            _block(f"gethostbyname_ex({host!r})")
        return gethostbyname_ex(host)

    cls.connect = guarded_connect  # type: ignore[method-assign]
    cls.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    cls.sendto = guarded_sendto  # type: ignore[method-assign,assignment]
    if sendmsg is not None:
        cls.sendmsg = guarded_sendmsg  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo
    socket.gethostbyname = guarded_gethostbyname
    socket.gethostbyname_ex = guarded_gethostbyname_ex
    _write(f"armed pid={os.getpid()} argv={' '.join(sys.argv)!r}\n")
    if os.environ.get("HUSHCODE_NET_GUARD_CANARY"):
        # A UDP connect to loopback sends nothing, but a tracer of this process must see it
        # (in an empty network namespace it fails: the call is what counts).
        canary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with canary, contextlib.suppress(OSError):
            canary.connect(("127.0.0.1", 9))


if _LOG:
    _install()
