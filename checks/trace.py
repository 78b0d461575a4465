"""Layer `trace` (formerly `path`): the same requests at every hop of Studio's request path, outside in.

Hops: the public URLs (CloudFlare's edge), ``traefik.entrypoint`` (the origin, with the public Host and
SNI), ``nginx.url`` (the pod's nginx) and ``app.url`` (gunicorn); without those two, every Ready frontend
pod's nginx and gunicorn through the Kubernetes API server's pod proxy (``studiodoctor.discovery.reach``). Paths: ``/stealthz``, a static asset
and a content object. The table of status, latency and key headers per hop shows where an answer
goes bad: a 502 at the edge with a healthy nginx points at the ingress, not the app.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from studiodoctor import studio_facts as facts
from studiodoctor.discovery import reach
from studiodoctor.discovery.reach import PROXY_GRANT
from studiodoctor.model import NAME_DOES_NOT_RESOLVE, RESOLVER_SILENT, Command, Reason, error, fail, ok, skip
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx",)

TRACE = "trace.hops"

KEY_HEADERS = ("server", "cache-control", "cf-ray", "cf-cache-status", "x-cache-status")
CLOUDFLARE_TIMEOUT_S = facts.CLOUDFLARE_TIMEOUT_S
NGINX_TIMEOUT_S = facts.STUDIO_PROXY_READ_TIMEOUT_S
DEFAULT_FAIL_RATIO = 0.8
# Which layer each hop belongs to (trace.hops is explained by a failure of that layer).
HOP_LAYERS = {"edge": "edge", "origin": "traefik", "nginx": "nginx", "app": "app"}


def _setting(ctx, key: str, default):
    """A key of the ``trace`` section, or of ``path`` (the layer's name before it was ``trace``)."""
    for section in ("trace", "path"):
        value = ctx.section(section).get(key)
        if value not in (None, ""):
            return value
    return default


def _hops(ctx) -> tuple[list[dict], list[dict]]:
    """(configured hops outside in, skipped hops with the reason)."""
    profile = ctx.profile
    hops, skipped = [], []
    publics = [u for u in (profile.value("public_urls") or []) if u]
    for url in publics:
        hops.append({"hop": "edge", "layer": "cloudflare", "base": url.rstrip("/")})
    if not publics:
        skipped.append({"hop": "edge", "layer": "cloudflare", "verdict": "skipped", "why": "public_urls is empty"})
    entry = str(ctx.section("traefik").get("entrypoint") or "").rstrip("/")
    if entry:
        hops.append({"hop": "origin", "layer": "traefik", "base": entry, "host": _origin_host(ctx, entry, publics)})
    else:
        skipped.append({"hop": "origin", "layer": "traefik", "verdict": "skipped",
                        "why": "traefik.entrypoint is not set"})
    for layer in ("nginx", "app"):  # the profile's URL, else every Ready pod through the API server's proxy
        found = reach.hops(ctx, layer)
        if isinstance(found, list):
            hops += [{"hop": layer, "layer": layer, "base": h.address(), "reach": h,
                      **({"pod": h.pod} if h.pod else {})} for h in found]
        else:
            skipped.append({"hop": layer, "layer": layer, "verdict": "skipped", "why": found.summary})
    return hops, skipped


def _origin_host(ctx, entry: str, publics: list[str]) -> str:
    """The hostname to send to the origin: an ``http.resolve`` name mapped to the entrypoint, else the
    first public URL's host."""
    parts = urlsplit(entry)
    target = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    for name, addr in (ctx.section("http").get("resolve") or {}).items():
        if addr == target:
            return name.rsplit(":", 1)[0]
    return urlsplit(publics[0]).hostname if publics else ""


def _paths(ctx, hops: list[dict]) -> tuple[list[dict], list[str]]:
    """``/stealthz``, a static asset found on the live system (``nginx.static_sample``, else one the app's
    pages, manifest or autoindex name: see ``studiodoctor.discovery.static_assets``) and a configured content object."""
    from studiodoctor.discovery.static_assets import static_sample

    nginx = ctx.section("nginx")
    paths = [{"name": "stealthz", "path": facts.STEALTHZ_PATH, "method": "GET", "app": True}]
    notes = []
    found = next((h for h in hops if h["hop"] == "nginx"), None) or \
        next((h for h in hops if h["hop"] == "edge"), None)
    look = reach.HopContext(ctx, found["reach"]) if found and "reach" in found else ctx
    sample = static_sample(look, found["base"]) if found else {"path": "", "tried": ["no nginx or public URL to look at"]}
    if sample["path"]:
        paths.append({"name": "static", "path": sample["path"], "method": "HEAD", "app": False})
    else:
        notes.append(f"no static asset found to probe ({'; '.join(sample['tried'])}): set nginx.static_sample")
    content = str(_setting(ctx, "content_path", "") or nginx.get("storage_path") or nginx.get("database_path") or "")
    if content:
        paths.append({"name": "content", "path": content, "method": "HEAD", "app": False})
    else:
        notes.append("no content object configured (trace.content_path, nginx.storage_path or nginx.database_path)")
    return paths, notes


def _limit_for(ctx, hop: str) -> tuple[str, float] | None:
    """The time limit of the hop in front of ``hop``."""
    if hop == "app":
        return "nginx's proxy_read_timeout", float(ctx.section("nginx").get("proxy_read_timeout") or NGINX_TIMEOUT_S)
    if hop in ("nginx", "origin"):
        return "CloudFlare's origin timeout", float(ctx.section("app").get("edge_timeout_s") or CLOUDFLARE_TIMEOUT_S)
    return None


def _send(ctx, hop: dict, spec: dict, hctx=None):
    """One request of ``spec`` at ``hop`` (``hctx``: its HopContext when the hop is reached through
    ``studiodoctor.discovery.reach``): (response or None, seconds on the wire, exception or None)."""
    from studiodoctor.probes import http as httpprobe

    t0 = time.monotonic()
    try:
        if hctx is not None:
            resp = reach.request(hctx, spec["method"], spec["path"])
        elif hop["hop"] == "origin" and hop.get("host"):
            parts = urlsplit(hop["base"])
            mapped = (ctx.section("http").get("resolve") or {})
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if f"{hop['host']}:{port}" in mapped:  # http.resolve gives Host and SNI
                url = f"{parts.scheme}://{hop['host']}:{port}{spec['path']}"
                resp = httpprobe.request(ctx, spec["method"], url)
            else:
                resp = httpprobe.request(ctx, spec["method"], hop["base"] + spec["path"], resolve=False,
                                         headers={"Host": hop["host"]},
                                         sni=hop["host"] if parts.scheme == "https" else None)
        else:
            resp = httpprobe.request(ctx, spec["method"], hop["base"] + spec["path"])
        return resp, httpprobe.network_seconds(resp, t0), None  # the wire's time, not our queue's
    except Exception as exc:  # noqa: BLE001 - network errors are the row's evidence
        return None, time.monotonic() - t0, exc


def _probe(ctx, hop: dict, spec: dict) -> dict:
    """The row of ``spec`` at ``hop``: ``/stealthz`` is sampled (``--samples``: the request that crosses
    every hop to the app, where intermittent 5xx and slow tails show), static and content asked once."""
    from studiodoctor.probes import sampling

    hctx = reach.HopContext(ctx, hop["reach"]) if "reach" in hop else None
    url = hop["reach"].address(spec["path"]) if hctx is not None else hop["base"] + spec["path"]
    row = {"hop": hop["hop"], "layer": hop["layer"], "url": url, "path": spec["path"],
           **({"pod": hop["pod"]} if hop.get("pod") else {}),
           "status": None, "latency_ms": None, **{h.replace("-", "_"): "" for h in KEY_HEADERS}, "error": ""}
    samples = sampling.take(ctx, lambda: _send(ctx, hop, spec, hctx), endpoint=url,
                            n=None if spec["name"] == "stealthz" else 1,
                            # nginx.app_proxy and app.stealthz ask the nginx and app hops' /stealthz: once
                            shared_as=f"{spec['method']} {hop['base']}{spec['path']}" if hop["hop"] in ("nginx", "app")
                            else "",
                            failed=lambda resp, exc: bool(_judge_one(ctx, hop["hop"], resp, exc)))
    if not samples.taken:
        row.update(verdict="unknown", why=f"not asked: {samples.cut}", error="not asked")
        return row
    sample = samples.first_failure() or samples.first_success()
    resp = sample.response
    if resp is not None:
        row["status"] = resp.status_code
        for h in KEY_HEADERS:
            row[h.replace("-", "_")] = resp.headers.get(h, "")
        if 300 <= resp.status_code < 400:
            row["location"] = resp.headers.get("location", "")
    else:
        row["error"] = sample.error
    row["latency_ms"] = round(samples.p50 * 1000, 1)
    if samples.sent > 1:
        row["samples"] = samples.summary()
        row["backend_requests"] = samples.backend_requests
    row["verdict"], row["why"] = _judge(ctx, hop["hop"], row, samples.p50)
    if hctx is not None and hctx.refused is not None:  # the way through the API server failed, not the hop
        row["verdict"], row["why"] = "unknown", reach.refusal(hctx, hctx.refused).summary
    elif samples.intermittent:
        row["verdict"], row["why"] = "bad", samples.intermittent_text()
    elif row["verdict"] == "ok":
        limit = _limit_for(ctx, hop["hop"])
        ratio = float(_setting(ctx, "latency_fail_ratio", DEFAULT_FAIL_RATIO))
        tail = samples.tail(lambda s: bool(limit) and s >= limit[1] * ratio)
        if tail:
            row["verdict"], row["why"] = "bad", (f"slow tail: {len(tail)} of {samples.sent} took "
                                                 f"{max(s.seconds for s in tail):.1f} s, near {limit[0]} of "
                                                 f"{limit[1]:g} s ({samples.timing_text()})")
    return row


def _judge_one(ctx, hop: str, resp, exc) -> str:
    """Why one answer is bad at ``hop`` ("" when it is not): no answer, a redirect or an error status. A
    lookup the resolver never answered is not bad (it was never tried)."""
    from studiodoctor.probes import http as httpprobe

    if exc is not None:
        text = httpprobe.describe_error(exc)[1]
        return "" if text.startswith(RESOLVER_SILENT) else text
    return "" if resp.status_code < 300 else f"HTTP {resp.status_code}"


def _judge(ctx, hop: str, row: dict, seconds: float) -> tuple[str, str]:
    if row["error"].startswith(RESOLVER_SILENT):  # never tried: neither bad nor good
        return "unknown", row["error"]
    if row["error"]:
        return "bad", row["error"]
    status = row["status"]
    if 300 <= status < 400:
        return "bad", f"redirected ({status}) to {row.get('location') or '?'}"
    if status >= 400:
        return "bad", f"HTTP {status}"
    limit = _limit_for(ctx, hop)
    ratio = float(_setting(ctx, "latency_fail_ratio", DEFAULT_FAIL_RATIO))
    if limit and seconds >= limit[1] * ratio:
        return "bad", f"{seconds:.1f} s, {'over' if seconds >= limit[1] else 'near'} {limit[0]} of {limit[1]:g} s"
    return "ok", f"HTTP {status}"


# CloudFlare is not among them: whether the edge explains the trace depends on the hop that goes bad
# first, a causal rule with that evidence (studiodoctor.diagnosis.causes), not any failure at the edge.
@check(TRACE, title="Request path, hop by hop",
       explained_by=tuple(layer for layer in HOP_LAYERS.values() if layer != "edge"),
       permissions=("HTTP GET/HEAD", PROXY_GRANT))
def check_trace(ctx):
    """Requests ``/stealthz``, a static asset (discovered as ``nginx.static`` does, or ``nginx.static_sample``)
    and a content object at every configured hop, outside in:
    public URLs (edge), ``traefik.entrypoint`` (origin, public Host and SNI), ``nginx.url``, ``app.url``
    (without them: every Ready frontend pod's nginx and gunicorn through the API server's pod proxy).

    Evidence is a table (one row per hop and path: status, latency, Server, Cache-Control, CF-Ray,
    CF-Cache-Status, X-Cache-Status) and, per path, the hop where the answer goes bad: the innermost hop
    that fails (everything behind it answers). ``diagnose 502`` leans on it: 502 at the edge and origin
    but 200 at nginx points at the ingress; 502 at nginx and nothing at the app points at the app.
    The app hop only gets ``/stealthz`` (static files and content are nginx's). ``/stealthz`` is asked
    ``--samples`` times at each hop (at most 6 at once per backend, a run-wide budget per backend): a hop where
    some answers fail is bad, "intermittent: 2 of 5 answered 502", and so is a slow tail (a share of the
    answers near the limit); each row carries its samples {sent, failed, p50_ms, p95_ms}. A hop slower than the
    timeout of the hop in front of it (nginx's ``proxy_read_timeout`` for the app, CloudFlare's 100 s for
    nginx and the origin) counts as bad. Unconfigured hops are listed as skipped."""
    hops, skipped = _hops(ctx)
    if not hops:
        return skip("no hop is configured (public_urls, traefik.entrypoint, nginx.url, app.url)",
                    reason=Reason.NOT_CONFIGURED,
                    evidence={"rows": skipped, "skipped_hops": [s["hop"] for s in skipped]},
                    hint="set at least nginx.url or app.url in the profile's config")
    paths, notes = _paths(ctx, hops)
    jobs = [(hop, spec) for spec in paths for hop in hops if spec["app"] or hop["hop"] != "app"]
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        rows = list(pool.map(lambda job: _probe(ctx, *job), jobs))
    order = {h: i for i, h in enumerate(("edge", "origin", "nginx", "app"))}
    rows.sort(key=lambda r: (paths.index(next(p for p in paths if p["path"] == r["path"])), order[r["hop"]]))
    bad_at: dict[str, dict] = {}
    for spec in paths:
        mine = [r for r in rows if r["path"] == spec["path"]]
        bad = [r for r in mine if r["verdict"] == "bad"]
        if bad:
            innermost = max(bad, key=lambda r: order[r["hop"]])
            bad_at[spec["path"]] = innermost
    first = min(bad_at.values(), key=lambda r: order[r["hop"]]) if bad_at else None
    names = list(dict.fromkeys(h["hop"] for h in hops))
    evidence = {"rows": rows + [dict(s) for s in skipped],
                "hops": names, "skipped_hops": [s["hop"] for s in skipped],
                "bad_at": {p: r["hop"] for p, r in bad_at.items()},
                "first_bad_hop": first["hop"] if first else None,
                "first_bad_layer": first["layer"] if first else None}
    if notes:
        evidence["notes"] = notes
    unknown = [r for r in rows if r["verdict"] == "unknown"]
    if first is None and unknown:
        return error(f"could not try {len(unknown)} of {len(rows)} requests, nothing bad among the rest: "
                     f"{unknown[0]['hop']} {unknown[0]['path']}: {unknown[0]['why']}"[:300], evidence=evidence,
                     reason=Reason.UNREACHABLE,
                     hint="A name was never answered for: `studiodoctor check --layer dns` asks the configured "
                          "resolvers, `getent hosts NAME` this machine's.")
    unresolved = [r for r in rows if r["error"].startswith(NAME_DOES_NOT_RESOLVE)]
    if rows and len(unresolved) == len(rows) and len(names) > 1:
        hosts = sorted({urlsplit(r["url"]).hostname or "?" for r in rows})
        return error(f"no hop answers from here: none of the {len(names)} hops' names resolves "
                     f"({', '.join(hosts[:4])}{', ...' if len(hosts) > 4 else ''}), so the trace cannot place "
                     "a fault in any layer", evidence={**evidence, "first_bad_hop": None, "first_bad_layer": None},
                     reason=Reason.UNREACHABLE,
                     hint="When no name resolves, look at this machine first (its resolver, VPN or network): "
                          "`studiodoctor check --layer local`, `getent hosts NAME`; then `studiodoctor check "
                          "--layer dns` for the public names.")
    if first is None:
        worst = max(rows, key=lambda r: r["latency_ms"] or 0)
        pods = len({h["pod"] for h in hops if h.get("pod")})
        return ok(f"{len(paths)} paths answer at all {len(names)} configured hops "
                  f"({', '.join(names)}{f', {pods} pods through the API server' if pods else ''}); slowest {worst['latency_ms']:.0f} ms at {worst['hop']} "
                  f"{worst['path']}", evidence=evidence)
    outer = [r for r in rows if r["path"] == first["path"] and order[r["hop"]] < order[first["hop"]]]
    seen_outside = "; ".join(f"{r['hop']} {r['status'] or r['error']}" for r in outer)
    at_pods = ""
    if first.get("pod"):  # the hop is several pods: how many answered badly, and which
        same = [r for r in rows if r["path"] == first["path"] and r["hop"] == first["hop"]]
        failing = sorted(r["pod"] for r in same if r["verdict"] == "bad")
        at_pods = f" at {len(failing)} of {len(same)} pods ({', '.join(failing[:4])})"
    summary = (f"first bad hop: {first['hop']} ({first['layer']}): {first['path']} {first['why']}{at_pods}"
               + (f"; outside it: {seen_outside}" if seen_outside else ""))
    others = [f"{p} at {r['hop']}" for p, r in bad_at.items() if r is not first]
    if others:
        summary += f"; also bad: {', '.join(others)}"
    return fail(summary, evidence=evidence,
                hint=f"Start with the {first['layer']} layer: `studiodoctor check --layer {first['layer']}`.",
                commands=[Command(f"studiodoctor check --layer {first['layer']}", note="the first bad hop's layer"),
                          Command(f"curl -sS -o /dev/null -w '%{{http_code}} %{{time_total}}s\\n' -m 20 "
                                  f"'{first['url']}'", note="the failing request by hand")])
