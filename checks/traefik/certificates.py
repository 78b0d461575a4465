"""traefik.certificates: the origin certificate of each hostname (valid, matching, not expiring)."""

from __future__ import annotations

from studiodoctor.backends.kube_pods import ago_text
from studiodoctor.backends.kubernetes import kubectl, traefik_namespace
from studiodoctor.model import READ_ONLY, Command, Reason, error, fail, ok, skip, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import CERTIFICATES, traefik_hostnames


@check(CERTIFICATES, title="Origin certificate valid for each hostname", needs=("traefik.entrypoint",),
       permissions=("TLS handshake",), smoke=True, metrics=("certificates.*.days_left",),
       produces=("ssl", "502"))
def check_certificates(ctx):
    """The certificate Traefik serves at ``traefik.entrypoint`` for each hostname's SNI: SAN, expiry, issuer.

    TRAEFIK DEFAULT CERT means no certificate matches the name (ACME/Let's Encrypt failed, or the
    TLS secret/file is missing): CloudFlare in Full (strict) mode then fails with 526. Expiry under
    ``traefik.cert_warn_days`` (14) is a `warn` (Let's Encrypt renews at 30 days left, so renewal is
    failing). ``traefik.expected_issuer`` (e.g. "Let's Encrypt") warns on a different issuer.

    Runs whichever controller routes the hostnames: ``traefik.entrypoint`` is the origin's address
    (DESIGN), and an ingress-nginx origin serving its "Fake Certificate" or an expired secret breaks
    CloudFlare's Full (strict) mode just the same."""
    from studiodoctor.probes.http import split_target
    from studiodoctor.probes.tls import handshake_problem, inspect_certificate

    hosts = traefik_hostnames(ctx)
    if not hosts:
        return skip("no hostnames to look for (set dns.hostnames or traefik.hostnames)", reason=Reason.NOT_CONFIGURED)
    entry = str(ctx.config["entrypoint"])
    if "://" not in entry:
        entry = "https://" + entry
    _, addr, port = split_target(entry)
    ca_file = ctx.section("http").get("ca_file") or ""
    warn_days = float(ctx.setting("cert_warn_days", 14))
    expected = str(ctx.setting("expected_issuer", ""))
    certs, problems, warnings, unknown = {}, [], [], []
    for host in hosts:
        try:
            info = inspect_certificate(addr, port, host, timeout=ctx.timeout(5, margin=0.5) / 2, ca_file=ca_file,
                                       on_network=getattr(ctx, "add_network", None))
        except (OSError, ValueError) as exc:
            return handshake_problem(exc, "Traefik entrypoint", f"{addr}:{port}", host)
        ev = info.evidence()
        ev["traefik_default"] = info.is_traefik_default
        certs[host] = ev
        if info.is_traefik_default:
            problems.append(f"{host}: TRAEFIK DEFAULT CERT served (no certificate for this name)")
        elif info.days_left < 0:
            problems.append(f"{host}: certificate expired {ago_text(-info.days_left * 86400)} "
                            f"({info.not_after:%Y-%m-%d}, issuer {info.issuer})")
        elif not info.names_match:
            problems.append(f"{host}: certificate is for {', '.join(info.sans[:3]) or info.subject}, not {host}")
        elif info.verify_error:
            problems.append(f"{host}: certificate not trusted: {info.verify_error} (issuer {info.issuer})")
        elif info.verify_unknown:
            unknown.append(f"{host}: could not verify the certificate: {info.verify_unknown}")
        elif info.days_left < warn_days:
            warnings.append(f"{host}: certificate expires in {info.days_left:.1f} days ({info.not_after:%Y-%m-%d})")
        elif expected and expected.lower() not in info.issuer.lower():
            warnings.append(f"{host}: issuer {info.issuer}, expected {expected}")
    cmds = [Command(f"openssl s_client -connect {addr}:{port} -servername {hosts[0]} </dev/null 2>/dev/null | "
                    "openssl x509 -noout -subject -issuer -dates -ext subjectAltName", READ_ONLY),
            Command(kubectl(ctx, "logs deploy/traefik --since=24h | grep -i -E 'acme|certificate'",
                            traefik_namespace(ctx)), READ_ONLY, "why ACME did not (re)issue")]
    evidence = {"entrypoint": f"{addr}:{port}", "certificates": certs}
    if problems:
        return fail("; ".join(problems)[:600], evidence=evidence, commands=cmds,
                    hint="Traefik serves its default certificate when none matches the SNI. Check the ACME "
                         "resolver (DNS-01 via CloudFlare) logs and the TLS secret or file of the router.")
    if unknown:
        return error("; ".join(unknown)[:600], evidence=evidence, commands=cmds, reason=Reason.UNEXPECTED)
    if warnings:
        return warn("; ".join(warnings)[:600], evidence=evidence, commands=cmds)
    return ok("; ".join(f"{h}: {c['issuer'][:60]}, {c['days_left']:.0f} days left" for h, c in certs.items())[:400],
              evidence=evidence)
