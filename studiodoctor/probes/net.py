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


# glibc's gai_strerror for EAI_AGAIN and EAI_FAIL, as clients that wrap the error keep them
_NO_ANSWER_TEXTS = ("Temporary failure in name resolution", "Non-recoverable failure in name resolution")


def lookup_got_no_answer(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a name lookup that got no answer:
    EAI_AGAIN (the resolver timed out, or answered SERVFAIL) or EAI_FAIL. A definite "no such name"
    (EAI_NONAME) is an answer, and False."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror) and exc.errno in (socket.EAI_AGAIN, socket.EAI_FAIL):
            return True
        if any(text in str(exc) for text in _NO_ANSWER_TEXTS):  # wrapped by a client that kept only the text
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def proxy_not_used(address: str) -> str:
    """The proxy variable this shell sets for ``address`` (an http(s) URL) that studiodoctor does not use,
    or "": none set, the host is local, or ``no_proxy`` exempts it. Only the variable's name: its value
    may carry credentials."""
    import ipaddress
    import os
    from urllib.parse import urlsplit
    from urllib.request import proxy_bypass_environment

    parts = urlsplit(address.split(" ", 1)[0])
    if parts.scheme not in ("http", "https"):
        return ""
    names = [n for n in (f"{parts.scheme}_proxy", f"{parts.scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
             if os.environ.get(n)]
    host = parts.hostname or ""
    if not names or not host or host == "localhost" or proxy_bypass_environment(host):
        return ""
    try:
        if not ipaddress.ip_address(host).is_global:
            return ""
    except ValueError:
        pass  # a name
    return names[0]
