"""The loopback port the lock's proxy serves on, bound before the proxy exists.

A resolver can then be started with the proxy's index URLs while the proxy is still being made: its
connections wait in the listening socket's backlog until the proxy accepts them.
"""

from __future__ import annotations

import socket


def loopback_listener() -> socket.socket:
    """A TCP socket listening on 127.0.0.1 at a port the system chose."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    return listener


def proxy_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def proxy_index_url(port: int, number: int) -> str:
    """The URL of upstream index `number` on the proxy listening on `port`."""
    return f"{proxy_base_url(port)}/{number}/"
