"""Layer `local`: "is it me?" — this machine's own network, before any Studio layer is blamed.

A control name that must resolve and a control host that must accept a connection: the CloudFlare API's
host by default (``cloudflare.api_url``), or ``local.control_urls`` (URLs or ``host[:port]``, port 443 when
none is given). When the controls fail too, every failure seen from this machine is more likely this
machine's network or VPN than Studio's stack: the runbook then names `local` and blames no Studio layer
(see ``studiodoctor.diagnosis.runbook``). Name lookups use this machine's own resolver
(``/etc/resolv.conf``), as every other probe from here does; ``http.resolve`` maps a control the way it
maps every HTTP probe.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

from studiodoctor.model import Command, Reason, fail, ok, skip, warn
from studiodoctor.registry import check

CONTROL = "local.control"
DEFAULT_PORT = 443
DEFAULT_CONTROL = "https://api.cloudflare.com/client/v4"


def controls(profile) -> tuple[list[tuple[str, int]], str]:
    """([(host, port)], where they came from): ``local.control_urls``, else the CloudFlare API's host."""
    configured = [str(u).strip() for u in (profile.value("local.control_urls") or []) if str(u).strip()]
    source = "local.control_urls"
    if not configured:
        configured = [str(profile.value("cloudflare.api_url") or DEFAULT_CONTROL)]
        source = "the CloudFlare API's host (cloudflare.api_url)"
    out = []
    for entry in configured:
        parts = urlsplit(entry if "://" in entry else f"//{entry}")
        try:
            port = parts.port or (80 if parts.scheme == "http" else DEFAULT_PORT)
        except ValueError:
            port = DEFAULT_PORT
        if parts.hostname:
            out.append((parts.hostname, port))
    return list(dict.fromkeys(out)), source


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _lookup(host: str, port: int, mapped: dict, timeout: float) -> tuple[list[tuple[str, int]], str, str]:
    """([(address, port)], how they were found, failure) for one control."""
    from studiodoctor.probes import net as netprobe

    target = mapped.get(f"{host}:{port}")
    if target:
        address, _, mapped_port = target.rpartition(":")
        return [(address.strip("[]"), int(mapped_port))], "http.resolve", ""
    if _is_address(host):
        return [(host, port)], "an address (nothing to resolve)", ""
    try:
        return [(a, port) for a in netprobe.resolve(host, port, timeout)], "this machine's resolver", ""
    except socket.gaierror as exc:
        if netprobe.lookup_got_no_answer(exc):
            return [], "", "this machine's resolver gave no answer"
        return [], "", f"does not resolve ({exc.strerror or exc})"
    except (TimeoutError, OSError) as exc:
        return [], "", f"lookup failed: {exc}"


def _connect(addresses: list[tuple[str, int]], timeout: float) -> tuple[str, float | None, str]:
    """(the address that accepted, ms, failure): the first address that accepts a TCP connection."""
    errors = []
    for address, port in addresses[:3]:
        t0 = time.perf_counter()
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return address, (time.perf_counter() - t0) * 1000, ""
        except socket.timeout:
            errors.append(f"{address}: timed out after {timeout:.1f} s")
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
    return "", None, "; ".join(errors) or "no address to connect to"


def probe_control(host: str, port: int, mapped: dict, timeout: float) -> dict:
    """One control: {"control", "resolved", "via", "connected", "connect_ms", "error"}."""
    addresses, via, failure = _lookup(host, port, mapped, timeout)
    row = {"control": f"{host}:{port}", "resolved": [a for a, _ in addresses], "via": via, "connected": "", "connect_ms": None,
           "error": failure}
    if addresses:
        row["connected"], ms, row["error"] = _connect(addresses, timeout)
        row["connect_ms"] = None if ms is None else round(ms, 1)
        if row["error"]:
            row["error"] = f"no connection: {row['error']}"
    return row


@check(CONTROL, title="This machine's network: a control name resolves and a control host accepts a connection",
       smoke=True)
def control(ctx):
    """Is it me? Before any Studio layer is blamed, this machine must reach a control that is not Studio's:
    its name must resolve with this machine's resolver and a TCP connection to it must open. The control is
    the CloudFlare API's host (``cloudflare.api_url``) unless ``local.control_urls`` lists others (URLs or
    ``host[:port]``). `fail` when no control answers: this machine's network, resolver or VPN is down, and
    the runbook then blames no Studio layer for what this machine cannot reach; `warn` when some controls
    answer and others do not."""
    targets, source = controls(ctx.profile)
    if not targets:
        return skip("no control to try: local.control_urls names no host", reason=Reason.NOT_CONFIGURED)
    mapped = ctx.section("http").get("resolve") or {}
    timeout = ctx.timeout(cap=5.0, margin=0.2)
    rows = [probe_control(host, port, mapped, timeout) for host, port in targets[:5]]
    answered = [r for r in rows if not r["error"]]
    evidence = {"controls": rows, "source": source, "answered": len(answered), "tried": len(rows)}
    names = ", ".join(r["control"] for r in rows)
    commands = [Command(f"getent hosts {targets[0][0]}", note="this machine's resolver"),
                Command("cat /etc/resolv.conf", note="which resolver this machine asks (a VPN's?)"),
                Command(f"curl -sS -o /dev/null -w '%{{http_code}}\\n' https://{targets[0][0]}/",
                        note="any HTTP status proves the network works")]
    if not answered:
        first = rows[0]
        return fail(f"this machine's network or VPN: the control {first['control']} {first['error']}"
                    + (f" (and {len(rows) - 1} more control(s))" if len(rows) > 1 else ""),
                    evidence=evidence, reason=Reason.UNREACHABLE, commands=commands,
                    hint="Nothing seen from this machine can be blamed on Studio while a control outside Studio "
                         "fails too: check this machine's connection, its resolver and its VPN, then run again "
                         "(`local.control_urls` sets the controls).")
    if len(answered) < len(rows):
        bad = [r for r in rows if r["error"]]
        return warn(f"{len(bad)} of {len(rows)} controls fail from here: "
                    + "; ".join(f"{r['control']} {r['error']}" for r in bad),
                    evidence=evidence, commands=commands,
                    hint="Some controls answer, so this machine is online; the failing ones may be blocked here.")
    return ok(f"this machine reaches {names}"
              + (f" ({answered[0]['connect_ms']} ms)" if len(rows) == 1 else ""), evidence=evidence)
