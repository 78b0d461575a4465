"""The third way in, after the profile's own address and the in-cluster doctor: a port-forward opened by
the doctor itself, for this run only, as on-call opens one by hand (``kubectl port-forward``).

When a check's endpoint is not in the profile (``redis.url``, ``postgres.dsn``, ``traefik.api_url``) and no
in-cluster doctor can be asked (none deployed, or not open to us: ``studiodoctor.vantage.NoWay``), the pod
that plays that endpoint is found by what it runs (``studiodoctor.discovery.tunnel_targets``), a loopback
tunnel to its port is opened through the API server's ``pods/portforward``
(``studiodoctor.backends.kube_portforward``), the checks run here against ``127.0.0.1:PORT`` with the
profile's credentials for that way (``redis.port_forward_url``, ``postgres.port_forward_dsn``: a URL whose
host the tunnel fills in), and every tunnel is closed when they are done. Each result says so in its
evidence (``via: port-forward pod NS/NAME:PORT``). A tunnel is a transport: the checks stay read-only.

When no tunnel can be opened (the grant is missing, no Ready pod runs it, no credentials for the way) those
checks are ``skip`` with the line that would open a way, never ``fail``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from .model import Command, Reason, Result, Status
from .vantage import NoWay, _context, _stand_in, not_set

# the credentials each way needs: the profile key that holds them ("" when none are needed)
CREDENTIALS = {"redis.url": "redis.port_forward_url", "postgres.dsn": "postgres.port_forward_dsn",
               "traefik.api_url": ""}
DEFAULT_URLS = {"redis.url": "redis:///0", "traefik.api_url": "http://"}


def tunnel_url(profile, key: str, address: str) -> str:
    """The endpoint value for ``key`` through the tunnel at ``address``: the way's credentials URL with its
    host and port replaced ("" when the way needs credentials the profile does not give)."""
    base = str(profile.value(CREDENTIALS[key]) or "") if CREDENTIALS[key] else ""
    base = base or DEFAULT_URLS.get(key, "")
    if not base:
        return ""
    parts = urlsplit(base)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + address
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_values(profile, values: dict[str, str]):
    """A copy of ``profile`` with ``values`` ({"redis.url": URL}) set; their passwords stay secrets."""
    import copy

    from .secrets import secrets_in_value

    data = copy.deepcopy(profile.data)
    found = set(profile.secrets)
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        data.setdefault(section, {})[name] = value
        found.update(secrets_in_value(dotted, value))
    return dataclasses.replace(profile, data=data, secrets=found)


def _grant_commands(ctx, namespace: str) -> list[Command]:
    from .backends.kubernetes import kubectl

    return [Command(kubectl(ctx, "auth can-i create pods/portforward", namespace), "read-only",
                    "what the API server says about our identity"),
            Command(kubectl(ctx, "create role studiodoctor-port-forward --verb=create --resource=pods/portforward",
                            namespace), "mutating", "then bind it to our user or group with `kubectl create "
                                                    "rolebinding`")]


def _open(ctx, profile, key: str, deadline: float):
    """(tunnel, target, url) or raise NoWay saying why no tunnel opens for ``key``."""
    from .backends import kubernetes as kc
    from .backends.kube_portforward import PortForwardRefused, StreamBroken, Tunnel, rule
    from .discovery.tunnel_targets import NoTarget, find_target

    if key not in DEFAULT_URLS and not profile.value(CREDENTIALS[key]):   # no user to connect as
        raise NoWay(f"no credentials for a port-forward ({CREDENTIALS[key]} is not set)",
                    f"Set {CREDENTIALS[key]} to the URL with the user and password and no host (e.g. "
                    '"postgresql://USER:${PASSWORD}@/DBNAME"): a port-forward then fills in its address.')
    conn = kc.connection(ctx)
    if conn.status != "ok":
        raise NoWay(f"no way into the cluster: {conn.detail}", "Give the kubeconfig that reaches the cluster.")
    try:
        target = find_target(ctx, key)
    except NoTarget as exc:
        raise NoWay(exc.why, exc.hint, exc.commands) from None
    timeout = max(0.5, min(profile.timeout, deadline - time.monotonic()))
    try:
        tunnel = Tunnel(conn.client.endpoint, target.namespace, target.pod, target.port, timeout=timeout,
                        idle=timeout).open()
    except PortForwardRefused as exc:
        if exc.kind == "forbidden":
            raise NoWay(f"a port-forward to {target.label} is not allowed: {exc.message}",
                        f"Grant {rule(target.namespace)} to the identity studiodoctor uses (what `kubectl "
                        "port-forward` needs; the checks through it stay read-only).",
                        _grant_commands(ctx, target.namespace)) from None
        raise NoWay(f"the API server refused a port-forward to {target.label}: HTTP {exc.code} {exc.message}",
                    "Check the pod (`kubectl describe pod`).") from None
    except (StreamBroken, OSError, Exception) as exc:  # noqa: BLE001 - the way did not open: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise NoWay(f"no port-forward to {target.label}: {first}", "Check the API server and the pod.") from None
    url = tunnel_url(profile, key, tunnel.address)
    return tunnel, target, url


def by_hand(profile, target) -> str:
    """The ``kubectl port-forward`` line that opens the same tunnel, bound to the profile's kubeconfig."""
    from .backends.kubectl import command

    return command(profile, f"port-forward pod/{target.pod} {target.port}:{target.port}", target.namespace)


def _through(res: Result, tunnel, target, tunnels: dict, profile) -> None:
    """Say in ``res`` that it was seen through ``tunnel``: the pod for the loopback address, the evidence, and
    what the port-forward itself said when the pod's port did not answer (its error channel)."""
    for other, there, _ in tunnels.values():   # "127.0.0.1:41203" means nothing to the reader
        res.summary = res.summary.replace(other.address, f"{there.label} (port-forward)")
    errors = list(dict.fromkeys(tunnel.errors))
    res.evidence = {**(res.evidence or {}), "via": f"port-forward {target.label}",
                    "port_forward": {"pod": f"{target.namespace}/{target.pod}", "port": target.port,
                                     "found": target.found, "streams": tunnel.streams,
                                     "opened": "for this run only, closed when its checks were done",
                                     **({"stream_errors": errors[:3]} if errors else {})}}
    if res.status not in (Status.OK, Status.SKIP):   # to look again by hand: the same tunnel
        res.commands = [*res.commands, Command(by_hand(profile, target), "read-only",
                                               f"the same tunnel by hand; {target.key} may then point at 127.0.0.1:{target.port}")]
    if errors and res.status in (Status.FAIL, Status.ERROR):
        said = errors[0].rpartition(": ")[2] or errors[0]
        res.summary += f" (the port-forward: nothing answers on port {target.port} in the pod: {said})"
        res.hint = (f"The API server reached pod {target.namespace}/{target.pod} but nothing answered on its port "
                    f"{target.port}: the process in the pod is down or listens elsewhere (`kubectl logs`, `kubectl "
                    "describe pod`). " + (res.hint or ""))


def _runnable(checks: list, away: dict[str, str], opened: set[str]) -> list:
    """The checks whose tunnel opened and whose dependencies among ``checks`` run too."""
    ids = {c.id for c in checks if away[c.id] in opened}
    changed = True
    while changed:
        changed = False
        for c in checks:
            if c.id in ids and any(d in away and d not in ids for d in c.depends_on):
                ids.discard(c.id)
                changed = True
    return [c for c in checks if c.id in ids]


def through_portforward(profile, checks: list, away: dict[str, str], deadline: float, no_doctor: NoWay,
                        run: Callable) -> list[Result]:
    """Results for the checks only the cluster reaches when no in-cluster doctor answers: run here through
    port-forwards opened for this run (``run(checks, profile, deadline)`` runs them), else `skip` with why."""
    ctx = _context(profile, deadline)
    tunnels, refused = {}, {}
    try:
        for key in dict.fromkeys(away[c.id] for c in checks):
            try:
                tunnels[key] = _open(ctx, profile, key, deadline)
            except NoWay as way:
                refused[key] = way
        chosen = _runnable(checks, away, set(tunnels))
        derived = with_values(profile, {key: url for key, (_, _, url) in tunnels.items()})
        results = run(chosen, derived, deadline) if chosen else []
    finally:
        for tunnel, _, _ in tunnels.values():
            tunnel.close()
    for res in results:
        tunnel, target, _ = tunnels[away[res.id]]
        _through(res, tunnel, target, tunnels, profile)
    ran = {r.id for r in results}
    for c in checks:
        if c.id in ran:
            continue
        key = away[c.id]
        way = refused.get(key) or next((refused[away[d]] for d in c.depends_on if d in away and away[d] in refused),
                                       None)
        why = f"; {way.why}" if way else ""
        hint = (way.hint + " " if way else "") + no_doctor.hint + f" Or set {key}."
        res = _stand_in(c, key, Status.SKIP, f"{not_set(profile, key)} and {no_doctor.why}{why}", hint,
                        [*(way.commands if way else []), *no_doctor.commands], reason=Reason.NOT_CONFIGURED)
        results.append(res)
    return results
