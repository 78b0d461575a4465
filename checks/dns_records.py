"""Layer `dns`: delegation to CloudFlare, names resolve everywhere, resolvers agree, proxied names
land in CloudFlare's ranges. dnspython is imported inside the functions (this module is named so as
not to shadow the `dns` package)."""

from __future__ import annotations

import ipaddress
from importlib import resources
from pathlib import Path

from studiodoctor.model import Command, Reason, error, fail, ok, skip, warn
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("dns.resolver",)

DELEGATION = "dns.delegation"
RESOLVES = "dns.resolves"
CONSISTENT = "dns.consistent"
CLOUDFLARE_RANGES = "dns.cloudflare_ranges"

# what each lookup outcome means, for summaries and hints
MEANING = {
    "nxdomain": "NXDOMAIN (the name does not exist)",
    "servfail": "SERVFAIL (the resolver could not get an answer)",
    "timeout": "timed out (no answer from the resolver)",
    "unreachable": "resolver unreachable from here",
    "refused": "REFUSED by the resolver",
    "noanswer": "no A/AAAA records (the name exists, without addresses)",
    "error": "unexpected answer",
}
HINTS = {
    "nxdomain": "The name is missing from the zone: add it in CloudFlare DNS (proxied). Postmortem 002: the "
                "move to CloudFlare missed wildcard subdomains.",
    "servfail": "The resolver failed to resolve the name: a broken delegation (NS at the registrar not "
                "CloudFlare's), a DNSSEC mismatch (DS record left at the registrar) or a CNAME loop "
                "(postmortem 002: a loop between CloudFlare and the old DNS host).",
    "timeout": "The resolver did not answer in time: check it is the right address and reachable, then "
               "retry with another resolver.",
    "unreachable": "Nothing answers DNS at the resolver's address: check dns.resolvers.",
    "refused": "The resolver refuses recursion for us: use a resolver that serves this network.",
    "noanswer": "Add an A/AAAA (or proxied CNAME) record for the name in CloudFlare DNS.",
}


# ---------------------------------------------------------------------------------------- helpers
def _resolvers(ctx) -> list[tuple[str, str | None, int]]:
    """(label, ip, port) for each of dns.resolvers; [("system", None, 53)] when empty."""
    out = []
    for entry in ctx.section("dns").get("resolvers") or []:
        entry = entry.strip()
        if entry.startswith("["):                      # [::1]:5353
            ip, _, port = entry[1:].partition("]:")
        elif entry.count(":") == 1:                    # 127.0.0.1:5353
            ip, _, port = entry.partition(":")
        else:                                          # 1.1.1.1 or a bare IPv6
            ip, port = entry, ""
        out.append((entry, ip, int(port or 53)))
    return out or [("system", None, 53)]


def _dig(name: str, rtype: str, label: str, ip: str | None, port: int) -> str:
    server = f" @{ip}" if ip else ""
    port_opt = f" -p {port}" if ip and port != 53 else ""
    return f"dig +noall +answer {name} {rtype}{server}{port_opt}"


def _classify(exc: BaseException) -> tuple[str, str]:
    import dns.exception
    import dns.resolver

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return "nxdomain", text
    if isinstance(exc, (dns.resolver.LifetimeTimeout, dns.exception.Timeout)):
        return "timeout", text
    if isinstance(exc, dns.resolver.NoNameservers):
        if "SERVFAIL" in text:
            return "servfail", text
        if "REFUSED" in text:
            return "refused", text
        if "refused" in text.lower() or "unreachable" in text.lower():
            return "unreachable", text
        return "error", text
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "unreachable", text
    if isinstance(exc, OSError):
        return "unreachable", text
    return "error", f"{type(exc).__name__}: {text}"


def _query(ctx, ip: str | None, port: int, name: str, rtype: str):
    """A dnspython answer, or raises; bounded by dns.query_timeout and the check's deadline."""
    import dns.resolver

    if ip:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [ip]
        res.port = port
    else:
        res = dns.resolver.Resolver()
    limit = ctx.timeout(float(ctx.section("dns").get("query_timeout") or 3.0))
    res.lifetime = limit
    res.timeout = limit
    return res.resolve(name, rtype, raise_on_no_answer=False, search=False)


def lookup(ctx, resolver: tuple[str, str | None, int], host: str) -> dict:
    """A and AAAA of ``host`` at one resolver (CNAME chain followed), shared by the checks of a run."""

    def run() -> dict:
        label, ip, port = resolver
        out = {"resolver": label, "host": host, "outcome": "ok", "addresses": [], "cnames": [], "detail": ""}
        for rtype in ("A", "AAAA"):
            try:
                answer = _query(ctx, ip, port, host, rtype)
            except Exception as exc:  # classified below; dnspython raises many types
                outcome, detail = _classify(exc)
                if rtype == "AAAA" and out["addresses"] and outcome in ("timeout", "servfail", "error"):
                    out["aaaa_error"] = detail  # an AAAA hiccup does not hide working A records
                    continue
                out.update(outcome=outcome, detail=detail, addresses=[])
                return out
            if answer.rrset is not None:
                out["addresses"] += [r.address for r in answer.rrset]
            chain = [str(rrset.name).rstrip(".") for rrset in answer.response.answer
                     if rrset.rdtype == 5]  # CNAME owners, in order
            if chain and not out["cnames"]:
                out["cnames"] = chain + [str(answer.canonical_name).rstrip(".")]
        if not out["addresses"]:
            out["outcome"] = "noanswer"
        return out

    return ctx.shared.get(f"dns.lookup:{resolver[0]}:{host.lower()}", run)


def _hostnames(ctx) -> list[str]:
    return [h.strip().rstrip(".") for h in ctx.section("dns").get("hostnames") or [] if h.strip()]


def load_ranges(ctx) -> tuple[list, str]:
    """CloudFlare's ranges (package data or dns.ip_ranges_file) plus dns.extra_edge_ranges; (nets, date)."""
    cfg = ctx.section("dns")
    path = cfg.get("ip_ranges_file")
    text = Path(path).read_text() if path else \
        resources.files("studiodoctor").joinpath("data/cloudflare_ips.txt").read_text()
    date = ""
    nets = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# date:"):
            date = line.split(":", 1)[1].strip()
        if line and not line.startswith("#"):
            nets.append(ipaddress.ip_network(line, strict=False))
    for extra in cfg.get("extra_edge_ranges") or []:
        nets.append(ipaddress.ip_network(extra, strict=False))
    return nets, date


def _in_ranges(address: str, nets) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in nets)


def _zone(ctx) -> tuple[str, str]:
    """(zone, where it came from). A zone derived from a hostname is refined by asking NS of each
    enclosing name, closest first: the first that has NS records is the zone's apex."""
    zone = str(ctx.section("dns").get("zone") or "").rstrip(".")
    note = (getattr(ctx.profile, "derived", {}) or {}).get("dns.zone", "dns.zone")
    hosts = _hostnames(ctx)
    if not note.startswith("derived") or not hosts:
        return zone, note
    label, ip, port = _resolvers(ctx)[0]
    labels = hosts[0].lower().split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        try:
            answer = _query(ctx, ip, port, candidate, "NS")
        except Exception:  # noqa: BLE001 - NXDOMAIN/timeout: keep walking up, then keep the guess
            continue
        if answer.rrset is not None and answer.rrset.rdtype == 2:
            return candidate, f"found from {hosts[0]}: the closest name with NS records (at {label})"
    return zone, note


# ----------------------------------------------------------------------------------------- checks
@check(DELEGATION, title="Zone delegated to CloudFlare's nameservers", needs=("dns.zone",), smoke=True)
def check_delegation(ctx):
    """The zone's NS records all end with `dns.nameserver_suffix` (CloudFlare's nameservers).

    The zone is `dns.zone`, else `cloudflare.zone`, else found from the first hostname: the closest
    enclosing name that has NS records (`config show` says which was used).

    CloudFlare only answers (and proxies) for the zone if the registrar (NameCheap) delegates it to the
    two `*.ns.cloudflare.com` nameservers CloudFlare assigned. A mixed or old NS set sends part of the
    world to a DNS host that does not know the proxied records (postmortem 002: a DNS loop during the
    move to CloudFlare). The NS set is asked from each of `dns.resolvers` (recursive resolvers return
    the zone's own NS set; compare with `whois` for the registrar's view).
    Fix: set the nameservers shown in the CloudFlare dashboard (Overview) at the registrar."""
    zone, zone_from = _zone(ctx)
    suffix = (ctx.setting("nameserver_suffix", "") or "").lower().rstrip(".")
    if not suffix:
        return skip("dns.nameserver_suffix is empty: nothing to compare the NS records with",
                    reason=Reason.NOT_CONFIGURED)
    seen, problems = {}, []
    commands = [Command(f"dig +short NS {zone}"), Command(f"whois {zone} | grep -i 'name server'")]
    for resolver in _resolvers(ctx):
        label, ip, port = resolver
        try:
            answer = _query(ctx, ip, port, zone, "NS")
        except Exception as exc:
            outcome, detail = _classify(exc)
            seen[label] = {"outcome": outcome, "detail": detail}
            problems.append((label, outcome, f"NS {zone} at {label}: {MEANING.get(outcome, outcome)}"))
            commands.append(Command(_dig(zone, "NS", *resolver)))
            continue
        names = sorted(str(r.target).lower().rstrip(".") for r in (answer.rrset or []))
        seen[label] = {"nameservers": names}
        if not names:
            problems.append((label, "noanswer", f"no NS records for {zone} at {label}"))
            continue
        foreign = [n for n in names if not n.endswith(suffix)]
        if foreign:
            problems.append((label, "foreign", f"{zone} is delegated to {', '.join(foreign)}"
                             f"{' (mixed with CloudFlare)' if len(foreign) < len(names) else ''}, "
                             f"not *{suffix}"))
    evidence = {"zone": zone, "zone_from": zone_from, "suffix": suffix, "answers": seen}
    if not problems:
        return ok(f"{zone} delegated to {', '.join(next(iter(seen.values()))['nameservers'])}",
                  evidence=evidence)
    outcomes = {p[1] for p in problems}
    hint = ("Set the zone's nameservers at the registrar to the two CloudFlare assigned (dashboard, Overview); "
            "remove any old ones." if "foreign" in outcomes else HINTS.get(sorted(outcomes)[0], ""))
    reason = Reason.TIMEOUT if outcomes == {"timeout"} else \
        Reason.UNREACHABLE if outcomes <= {"timeout", "unreachable"} else Reason.FINDING
    summary = problems[0][2] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
    if outcomes <= {"error"}:  # answers we could not read: we could not look, the delegation may be fine
        return error(summary, evidence=evidence, hint="Run the dig commands to see the raw answer.",
                     commands=commands)
    return fail(summary, evidence=evidence, hint=hint, commands=commands, reason=reason)


@check(RESOLVES, title="Every hostname resolves at every resolver", needs=("dns.hostnames",),
       explained_by=("cloudflare.dns_records", "cloudflare.zone"), smoke=True)
def check_resolves(ctx):
    """Each of `dns.hostnames` resolves to A/AAAA addresses (CNAME chains followed) at each of
    `dns.resolvers` (or the system resolver).

    NXDOMAIN (the record is missing), SERVFAIL (the resolver failed: broken delegation, DNSSEC, a CNAME
    loop) and timeouts (the resolver is not answering) are told apart, because each has a different fix.
    Users who cannot resolve studio's name see "server not found", not a Studio error page.
    Fix: add the missing record (proxied) in CloudFlare DNS; for SERVFAIL follow `dns.delegation`."""
    rows, bad = [], []
    commands = []
    for resolver in _resolvers(ctx):
        for host in _hostnames(ctx):
            res = lookup(ctx, resolver, host)
            rows.append(res)
            if res["outcome"] != "ok":
                bad.append(res)
                commands.append(Command(_dig(host, "A", *resolver)))
    evidence = {"lookups": rows}
    if not bad:
        addrs = sorted({a for r in rows for a in r["addresses"]})
        return ok(f"{len(_hostnames(ctx))} name(s) resolve at {len(_resolvers(ctx))} resolver(s): "
                  f"{', '.join(addrs[:4])}{'...' if len(addrs) > 4 else ''}", evidence=evidence)
    first = bad[0]
    outcomes = {b["outcome"] for b in bad}
    summary = f"{first['host']} at {first['resolver']}: {MEANING.get(first['outcome'], first['outcome'])}"
    if len(bad) > 1:
        summary += f" (+{len(bad) - 1} more failed lookups of {len(rows)})"
    reason = Reason.TIMEOUT if outcomes == {"timeout"} else \
        Reason.UNREACHABLE if outcomes <= {"timeout", "unreachable"} else Reason.FINDING
    hint = " ".join(dict.fromkeys(HINTS.get(o, "") for o in sorted(outcomes)))
    if outcomes <= {"error"}:
        return error(summary, evidence=evidence, hint="Run the dig commands to see the raw answer.",
                     commands=commands)
    return fail(summary, evidence=evidence, hint=hint, commands=commands, reason=reason)


@check(CONSISTENT, title="Resolvers agree on the answers", needs=("dns.hostnames",))
def check_consistent(ctx):
    """Every resolver of `dns.resolvers` returns the same addresses for each hostname.

    Divergent answers mean a change is still propagating (old TTLs), a resolver caches a stale or
    poisoned answer, or split-horizon DNS differs from the public zone; users behind different resolvers
    then reach different places (postmortem 002 ran into exactly this during the CloudFlare move).
    A warning, not a failure: it is normal for a few minutes after a change (see the TTLs)."""
    resolvers = _resolvers(ctx)
    if len(resolvers) < 2:
        return skip("only one resolver configured (dns.resolvers): nothing to compare",
                    reason=Reason.NOT_APPLICABLE, hint="list two or more resolvers in dns.resolvers, "
                    "e.g. [\"1.1.1.1\", \"8.8.8.8\", \"9.9.9.9\"]")
    diverging, compared, unanswered = {}, 0, []
    for host in _hostnames(ctx):
        answers = {}
        for resolver in resolvers:
            res = lookup(ctx, resolver, host)
            answers[resolver[0]] = sorted(res["addresses"]) if res["outcome"] == "ok" else res["outcome"]
        if all(isinstance(v, str) for v in answers.values()):
            unanswered.append(host)
            continue
        compared += 1
        distinct = {tuple(v) if isinstance(v, list) else v for v in answers.values()}
        if len(distinct) > 1:
            diverging[host] = answers
    evidence = {"diverging": diverging, "unanswered": unanswered, "resolvers": [r[0] for r in resolvers]}
    if diverging:
        host, answers = next(iter(diverging.items()))
        parts = "; ".join(f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in answers.items())
        return warn(f"resolvers disagree on {host}: {parts}", evidence=evidence,
                    hint="Wait one TTL after a change; if it persists, flush the lagging resolver's cache or "
                         "find which resolver serves an old zone.",
                    commands=[Command(_dig(host, "A", *r)) for r in resolvers])
    if not compared:
        return error("nothing to compare: no resolver answered for any hostname (see dns.resolves)",
                     evidence=evidence, reason=Reason.DEPENDENCY)
    return ok(f"{len(resolvers)} resolvers agree on {compared} name(s)", evidence=evidence)


@check(CLOUDFLARE_RANGES, title="Proxied names resolve into CloudFlare's ranges", needs=("dns.hostnames",),
       explained_by=("cloudflare.dns_records",))
def check_cloudflare_ranges(ctx):
    """Each proxied hostname (`dns.proxied_hostnames`, default `dns.hostnames`) resolves only to
    CloudFlare's published edge ranges (shipped in `studiodoctor/data/cloudflare_ips.txt` with their
    date; `dns.ip_ranges_file` overrides, `dns.extra_edge_ranges` adds ranges).

    An address outside them means the record is "DNS only" (grey cloud) or points around CloudFlare:
    no edge TLS, no cache, no DDoS protection, and the origin's address is public.
    Fix: turn the record's proxy status on (orange cloud) in CloudFlare DNS."""
    proxied = [h.rstrip(".") for h in ctx.setting("proxied_hostnames", []) or []] or _hostnames(ctx)
    nets, date = load_ranges(ctx)
    outside, unresolved, seen = {}, [], {}
    for host in proxied:
        addrs = sorted({a for r in _resolvers(ctx) for a in lookup(ctx, r, host)["addresses"]})
        seen[host] = addrs
        if not addrs:
            unresolved.append(host)
            continue
        bad = [a for a in addrs if not _in_ranges(a, nets)]
        if bad:
            outside[host] = bad
    evidence = {"addresses": seen, "ranges_date": date, "ranges": len(nets), "outside": outside,
                "unresolved": unresolved}
    if outside:
        host, bad = next(iter(outside.items()))
        return fail(f"{host} resolves to {', '.join(bad)}, outside CloudFlare's ranges: not proxied "
                    f"(DNS-only record or one that points around CloudFlare)", evidence=evidence,
                    hint="Turn on the proxy (orange cloud) for the record in CloudFlare DNS; if it must stay "
                         "DNS-only, remove it from dns.proxied_hostnames. The origin's address is exposed.",
                    commands=[Command(f"dig +short {host}"),
                              Command("curl -s https://www.cloudflare.com/ips-v4",
                                      note="compare with the shipped ranges")])
    if unresolved:
        return error(f"could not check {', '.join(unresolved)}: no addresses from any resolver (see dns.resolves)",
                     evidence=evidence, reason=Reason.DEPENDENCY)
    return ok(f"{len(proxied)} proxied name(s) resolve into CloudFlare's ranges (list of {date})",
              evidence=evidence)
