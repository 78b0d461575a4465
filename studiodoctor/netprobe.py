"""Socket-level helpers shared by the layers that speak their own protocol (Redis, PostgreSQL)."""

from __future__ import annotations

import socket
import threading


def resolve(host: str, port: int, timeout: float) -> list[str]:
    """getaddrinfo bounded by ``timeout`` (it has no timeout of its own): the addresses, in order."""
    box: list = []

    def run():
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box.append(exc)

    t = threading.Thread(target=run, daemon=True, name=f"dns:{host}")
    t.start()
    t.join(timeout)
    if not box:
        raise TimeoutError(f"DNS lookup of {host} timed out")
    if isinstance(box[0], Exception):
        raise box[0]
    return list(dict.fromkeys(info[4][0] for info in box[0]))
