"""Ports the local stack picks for itself, kept out of the kernel's ephemeral range.

A port taken with ``bind(0)`` comes from the ephemeral range, the range a user's ``--port`` is often
drawn from too (and the one every outgoing connection's local port comes from). A port handed to a
child process (the Lambda emulators) is free only when it was checked, so one drawn from that range
can be taken by the time the child binds it, or be the very port the user asked for. Ports drawn
below the range are never handed out by the kernel, only bound by someone asking for them by number.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

# Linux's; other systems (macOS and the BSDs) use IANA's 49152-65535.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
IANA_EPHEMERAL = (49152, 65535)
# Below this the well-known and the commonly configured ports (3000, 5000, 8080 ...) live.
LOWEST = 10000
ATTEMPTS = 64


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out for bind(0) and outgoing connections."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return IANA_EPHEMERAL
    return low, high


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free on 127.0.0.1 now, below the ephemeral range when that range leaves room below it."""
    low, _ = ephemeral_range()
    if low - LOWEST >= 1000:
        for _ in range(ATTEMPTS):
            port = LOWEST + secrets.randbelow(low - LOWEST)
            if _is_free(port):
                return port
    with socket.socket() as sock:  # no room below the range (or all taken): the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
