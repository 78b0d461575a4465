"""Layer `email`: how Studio's mail leaves, through Postmark. The server API with httpx (``postmarker``, the
Python client, has no message-streams API and no per-call deadline), Postmark's status API, and the
SMTP relay with ``smtplib``: EHLO, STARTTLS, EHLO, QUIT -- never AUTH, never MAIL/RCPT/DATA.

Studio sends with ``postmark.django_backend.EmailBackend`` (``POSTMARK_API_KEY``, the server token)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from studiodoctor.model import Command, Reason, error, fail, ok, unreachable, warn
from studiodoctor.registry import check
from studiodoctor.probes.staged import Staged
from studiodoctor.probes.saasapi import call, guard, unexpected

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx", "smtplib")

TOKEN = "email.postmark_token"
STREAM = "email.message_stream"
BOUNCES = "email.bounce_rate"
DELIVERIES = "email.recent_deliveries"
STATUS = "email.postmark_status"
SMTP = "email.smtp_relay"
KEY_ENV = "email.app_key_env"

NEEDS = ("email.server_token",)
TOKEN_ENV = "$POSTMARK_API_KEY"
AUTH_HINT = ("Use the server's API token (Postmark, Servers, the server, API Tokens) in email.server_token; in the "
             "cluster it is EMAIL_CREDENTIALS_POSTMARK_API_KEY (secret postmark-api-key). A rejected token also "
             "means Studio cannot send.")
# Postmark reviews (and may pause) senders above these rates (percent), https://postmarkapp.com/support
BOUNCE_LIMIT, SPAM_LIMIT = 10.0, 0.1


def _api(ctx) -> str:
    return (ctx.section("email").get("postmark_api_url") or "https://api.postmarkapp.com").rstrip("/")


def _stream(ctx) -> str:
    return str(ctx.setting("message_stream", "outbound"))


def _curl(ctx, path: str) -> Command:
    return Command(f'curl -sS -H "Accept: application/json" -H "X-Postmark-Server-Token: {TOKEN_ENV}" '
                   f'"{_api(ctx)}{path}"')


def _get(ctx, path: str, what: str, params: dict | None = None, ok_statuses=(200,)):
    token = ctx.section("email")["server_token"]
    _, body, _ = call(ctx, "Postmark", "GET", _api(ctx) + path, headers={"X-Postmark-Server-Token": token},
                      params=params, what=what, permission="server-level access (a server token)",
                      auth_hint=AUTH_HINT, ok_statuses=ok_statuses)
    if not isinstance(body, dict):
        raise unexpected("Postmark", what, body, "a JSON object")
    return body


def _age_min(stamp) -> float | None:
    try:
        then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone(timedelta(hours=-5)))  # Postmark's API speaks Eastern time
    return (datetime.now(timezone.utc) - then).total_seconds() / 60


# ---------------------------------------------------------------------------------------------- checks
@check(TOKEN, title="Postmark server token valid, server live", needs=NEEDS, permissions=("server token",), smoke=True)
@guard
def check_token(ctx):
    """The server token (`email.server_token`) is accepted and the server delivers (DeliveryType Live).

    A rejected token (401, ErrorCode 10) means Studio's own sends fail the same way. A Sandbox server
    accepts messages and never delivers them."""
    srv = _get(ctx, "/server", "the server")
    if "Name" not in srv:
        raise unexpected("Postmark", "the server", srv, "an object with Name")
    ev = {k: srv.get(k) for k in ("ID", "Name", "DeliveryType", "SmtpApiActivated")}  # never ApiTokens
    cmds = [_curl(ctx, "/server")]
    if srv.get("DeliveryType") == "Sandbox":
        return fail(f"server {srv['Name']} is in Sandbox mode: messages are accepted and never delivered", evidence=ev,
                    commands=cmds, hint="Switch the server to Live (Postmark, server Settings) or use the live server's token.")
    return ok(f"server {srv['Name']} ({srv.get('DeliveryType', 'delivery type unknown')}) accepted our token",
              evidence=ev, commands=cmds)


@check(STREAM, title="Outbound message stream active", needs=NEEDS, depends_on=(TOKEN,), permissions=("server token",))
@guard
def check_stream(ctx):
    """The message stream Studio sends through (`email.message_stream`, default `outbound`) exists and is not
    archived. An archived stream rejects every message sent to it: Studio's mail stops entirely."""
    name = _stream(ctx)
    body = _get(ctx, f"/message-streams/{name}", f"message stream {name}", ok_statuses=(200, 422))
    cmds = [_curl(ctx, f"/message-streams/{name}")]
    if "ErrorCode" in body and "ID" not in body:
        return fail(f"message stream {name} not found ({body.get('Message', '')[:120]})", commands=cmds,
                    evidence={"error_code": body.get("ErrorCode")},
                    hint="Studio sends to the default transactional stream `outbound`; set email.message_stream if not.")
    if "ArchivedAt" not in body:
        raise unexpected("Postmark", "the message stream", body, "an object with ArchivedAt")
    ev = {k: body.get(k) for k in ("ID", "MessageStreamType", "ArchivedAt", "ExpectedPurgeDate")}
    if body.get("ArchivedAt"):
        return fail(f"message stream {name} is archived (paused) since {body['ArchivedAt']}: Postmark rejects every "
                    "message sent to it", evidence=ev, commands=cmds,
                    hint=f"Unarchive it before {body.get('ExpectedPurgeDate') or 'it is purged'} (Postmark, the server, "
                         "Message Streams, or POST /message-streams/{stream}/unarchive).")
    return ok(f"message stream {name} ({body.get('MessageStreamType')}) active", evidence=ev, commands=cmds)


@check(BOUNCES, title="Bounce and spam complaint rates below Postmark's limits", needs=NEEDS, depends_on=(TOKEN,),
       permissions=("server token",))
@guard
def check_bounce_rate(ctx):
    """Bounce rate and spam complaint rate of the stream since yesterday (Postmark's outbound stats).

    Postmark reviews, and may pause, senders above a 10 % bounce rate or a 0.1 % spam complaint rate:
    a fail at the limit, a warning at half of it. Bounces come from stale addresses (a bulk send to old
    users); look at the bounce list by type."""
    today = datetime.now(timezone(timedelta(hours=-5))).date()
    params = {"fromdate": str(today - timedelta(days=1)), "todate": str(today), "messagestream": _stream(ctx)}
    s = _get(ctx, "/stats/outbound", "outbound stats", params)
    try:
        sent, bounce, spam = int(s["Sent"]), float(s["BounceRate"]), float(s["SpamComplaintsRate"])
    except (KeyError, TypeError, ValueError):
        raise unexpected("Postmark", "outbound stats", s, "Sent, BounceRate and SpamComplaintsRate") from None
    ev = {"since": params["fromdate"], "sent": sent, "bounced": s.get("Bounced"), "bounce_rate_pct": bounce,
          "spam_complaints": s.get("SpamComplaints"), "spam_rate_pct": spam,
          "limits_pct": {"bounce": BOUNCE_LIMIT, "spam": SPAM_LIMIT}}
    cmds = [_curl(ctx, f"/stats/outbound?fromdate={params['fromdate']}&todate={params['todate']}"),
            _curl(ctx, "/bounces?count=50&offset=0")]
    text = f"bounce rate {bounce:g}%, spam complaints {spam:g}% of {sent} sent since {params['fromdate']}"
    hint = "Postmark may pause sending at these rates: find the bounce types (hard bounces = stale addresses) and stop the send that causes them."
    if bounce >= BOUNCE_LIMIT or spam >= SPAM_LIMIT:
        return fail(f"{text}: at or above Postmark's limits ({BOUNCE_LIMIT:g}% / {SPAM_LIMIT:g}%)", evidence=ev,
                    commands=cmds, hint=hint)
    if bounce >= BOUNCE_LIMIT / 2 or spam >= SPAM_LIMIT / 2:
        return warn(f"{text}: above half of Postmark's limits", evidence=ev, commands=cmds, hint=hint)
    return ok(text, evidence=ev, commands=cmds)


@check(DELIVERIES, title="Studio handed mail to Postmark recently", needs=NEEDS, depends_on=(TOKEN,),
       permissions=("server token",), explained_by=(STREAM, "kubernetes"))
@guard
def check_recent_deliveries(ctx):
    """The newest outbound message of the stream is younger than `email.max_quiet_minutes` (360).

    Sends that stop entirely are the classic email incident: the app's key is wrong or missing in the pods,
    the stream is paused, or the app cannot reach Postmark. Only the time, status and tag of the newest
    message are shown (never recipients or subjects)."""
    limit = float(ctx.setting("max_quiet_minutes", 360))
    name = _stream(ctx)
    body = _get(ctx, "/messages/outbound", "outbound messages", {"count": 1, "offset": 0, "messagestream": name})
    msgs = body.get("Messages")
    if not isinstance(msgs, list) or "TotalCount" not in body:
        raise unexpected("Postmark", "outbound messages", body, "TotalCount and Messages")
    cmds = [_curl(ctx, f"/messages/outbound?count=10&offset=0&messagestream={name}")]
    if not msgs:
        return fail(f"no outbound message at all in stream {name} (Postmark keeps 45 days)", commands=cmds,
                    evidence={"total": body.get("TotalCount")},
                    hint="Studio has not sent through this server: check POSTMARK_API_KEY in the app pods.")
    m = msgs[0]
    age = _age_min(m.get("ReceivedAt"))
    if age is None:
        raise unexpected("Postmark", "outbound messages", m, "ReceivedAt as an ISO time")
    ev = {"newest_received_at": m.get("ReceivedAt"), "minutes_ago": round(age), "status": m.get("Status"),
          "tag": m.get("Tag"), "stream": m.get("MessageStream"), "total_45d": body.get("TotalCount")}
    if age > limit:
        return fail(f"no message handed to Postmark for {age / 60:.1f} h (newest {m.get('ReceivedAt')}): sends stopped",
                    evidence=ev, commands=cmds,
                    hint="Look at the app pods' logs for postmark/smtp errors and at the stream's state "
                         f"({STREAM}); the kubernetes layer shows whether the key is mounted.")
    return ok(f"newest message {age:.0f} min ago ({m.get('Status')}), {body.get('TotalCount')} in 45 days",
              evidence=ev, commands=cmds)


@check(STATUS, title="Postmark's status API: API and SMTP up", needs=("email.server_token", "email.status_url"))
@guard
def check_status(ctx):
    """Postmark's own status API (`email.status_url`, `/services`): the API and SMTP services are UP (or in
    MAINTENANCE, as Studio's prober accepted). DOWN, DEGRADED or DELAY there is Postmark's incident:
    mail is queued or lost upstream and nothing on our side fixes it. Like every check of the layer it
    runs once the layer is configured (`email.server_token`)."""
    base = str(ctx.section("email")["status_url"]).rstrip("/")
    _, body, _ = call(ctx, "Postmark status", "GET", f"{base}/services", headers={}, what="service status",
                      permission="nothing (public)", auth_hint="")
    if not isinstance(body, list) or not all(isinstance(s, dict) and "url" in s and "status" in s for s in body):
        raise unexpected("Postmark status", "services", body, "a list of {name, url, status}")
    states = {s["url"].rsplit("/", 1)[-1]: s["status"] for s in body}
    cmds = [Command(f"curl -sS {base}/services")]
    missing = [k for k in ("api", "smtp") if k not in states]
    if missing:
        return error(f"the status API lists no {', '.join(missing)} service", evidence={"services": states},
                     commands=cmds)
    bad = {k: states[k] for k in ("api", "smtp") if states[k] not in ("UP", "MAINTENANCE")}
    if bad:
        return fail("Postmark reports " + ", ".join(f"{k.upper()} {v}" for k, v in bad.items()) +
                    ": an incident on Postmark's side", evidence={"services": states}, commands=cmds,
                    hint="Follow status.postmarkapp.com; mail sent meanwhile is queued or refused upstream.")
    return ok(f"Postmark API {states['api']}, SMTP {states['smtp']}", evidence={"services": states}, commands=cmds)


@check(KEY_ENV, title="The app container gets the Postmark key from a Secret", permissions=("list deployments.apps",))
@guard
def check_app_key_env(ctx):
    """The app container of the frontend Deployment (the one running gunicorn, or `kubernetes.app_deployment`;
    override with `email.deployment`/`email.container`) has the Postmark key in its env, from a Secret:
    `email.key_env` if set, else Studio's EMAIL_CREDENTIALS_POSTMARK_API_KEY, else a variable naming POSTMARK. Without it Studio's EmailBackend has no key and sends nothing.

    Only the Deployment spec is read: the variable's name and where it comes from, never a value and never
    the Secret (a missing Secret stops the pods with CreateContainerConfigError: kubernetes.pods_crashing).
    Skipped when Kubernetes is not configured."""
    from studiodoctor.discovery.appdeploy import app_container

    found = app_container(ctx)
    if not isinstance(found, tuple):
        return found
    dep, c = found
    env = [e for e in c.get("env") or [] if isinstance(e, dict) and e.get("name")]
    configured = ctx.setting("key_env", "")
    # the configured name; else Studio's; else any variable naming Postmark (other charts name it otherwise)
    entry = next((e for e in env if e["name"] == (configured or "EMAIL_CREDENTIALS_POSTMARK_API_KEY")), None)
    if entry is None and not configured:
        entry = next((e for e in env if "POSTMARK" in e["name"].upper()), None)
    var = entry["name"] if entry else (configured or "EMAIL_CREDENTIALS_POSTMARK_API_KEY")
    from studiodoctor.backends.kubernetes import kubectl

    cmds = [Command(kubectl(ctx, f"get deployment {dep} -o jsonpath='{{.spec.template.spec.containers[*].env[*].name}}'"))]
    ev = {"deployment": dep, "container": c.get("name"), "variable": var}
    if entry is None:
        if c.get("envFrom"):
            return error(f"{var} is not in {dep}'s env and the container also loads envFrom sources: cannot tell "
                         "without reading them (we never read Secrets)", evidence=dict(ev, envFrom=len(c["envFrom"])),
                         commands=cmds)
        return fail(f"{var} is not set in the {c.get('name')} container of {dep}: Studio has no Postmark key and "
                    "sends no mail", evidence=ev, commands=cmds,
                    hint=f"Set {var} from the postmark-api-key Secret in the chart's env (helm upgrade), then check "
                         "the pods restarted.")
    ref = ((entry.get("valueFrom") or {}).get("secretKeyRef") or {})
    if ref:
        ev["from"] = f"secret {ref.get('name')} key {ref.get('key')}"
        return ok(f"{var} comes from {ev['from']} in {dep}", evidence=ev, commands=cmds)
    if entry.get("value"):
        return warn(f"{var} is set as a literal value in the {dep} spec (anyone who can read Deployments sees the "
                    "key): move it to a Secret", evidence=dict(ev, source="literal value"), commands=cmds)
    if entry.get("valueFrom"):
        return ok(f"{var} comes from {', '.join(entry['valueFrom'])} in {dep}", evidence=ev, commands=cmds)
    return fail(f"{var} is empty in the {c.get('name')} container of {dep}: Studio sends no mail", evidence=ev,
                commands=cmds)


def _tls_context(ctx):
    import ssl

    ca = ctx.section("email").get("ca_file")
    if ca:
        return ssl.create_default_context(cafile=ca)
    from studiodoctor.probes.http import ssl_context

    return ssl_context(ctx)


@check(SMTP, title="SMTP relay answers and offers STARTTLS with a valid certificate",
       needs=("email.server_token", "email.smtp_host"))
@guard
def check_smtp_relay(ctx):
    """The relay (`email.smtp_host`:`email.smtp_port`, Postmark's smtp.postmarkapp.com:587) greets, offers
    STARTTLS, and its certificate verifies for the host name and is not about to expire (14 days).

    Only EHLO, STARTTLS, EHLO and QUIT are sent: never AUTH, never a message."""
    import smtplib
    import socket
    import ssl

    cfg = ctx.section("email")
    host, port = str(cfg["smtp_host"]), int(cfg.get("smtp_port") or 587)
    address = f"{host}:{port}"
    cmds = [Command(f"openssl s_client -starttls smtp -connect {address} -servername {host} </dev/null")]
    try:
        sslctx = _tls_context(ctx)
    except (OSError, ssl.SSLError) as exc:
        return error(f"cannot load email.ca_file: {exc}")
    ev: dict = {"address": address}
    conn = Staged("SMTP relay", address, ev, commands=cmds, ctx=ctx)
    timeout = ctx.timeout(margin=0.2)
    outbound = "Outbound 587 may be blocked from here (GKE egress, firewall); the API path still works."
    addrs = conn.dns(host, port, timeout)
    sock = conn.tcp(addrs[0], port, timeout, keep=True, refused_hint=outbound, timeout_hint=outbound)

    class Relay(smtplib.SMTP):
        def _get_socket(self, host, port, timeout):  # the socket of the TCP stage, already connected
            return sock

    try:
        with conn.stage("greeting"):
            smtp = Relay(host, port, timeout=timeout, local_hostname="studiodoctor.invalid")
        with smtp:
            with conn.stage("ehlo"):
                code, msg = smtp.ehlo()
            ev["ehlo"] = code
            if not smtp.has_extn("starttls"):
                ev["stage"] = "starttls"
                return fail(f"SMTP relay {address} does not offer STARTTLS: credentials would cross in clear",
                            evidence=dict(ev, extensions=sorted(smtp.esmtp_features)), commands=cmds)
            with conn.stage("tls"):
                smtp.starttls(context=sslctx)
                cert = smtp.sock.getpeercert()
                smtp.ehlo()
            ev.update(tls=smtp.sock.version(), auth_offered=smtp.esmtp_features.get("auth", "").split())
    except ssl.SSLCertVerificationError as exc:
        return fail(f"SMTP relay {address} certificate does not verify: {exc.verify_message or exc}", evidence=ev,
                    commands=cmds, hint="An invalid certificate makes Django refuse the relay (or, without "
                                        "verification, exposes the credentials).")
    except (socket.timeout, TimeoutError):
        sock.close()
        return unreachable("SMTP relay", address, "timed out", timed_out=True, commands=cmds, evidence=ev)
    except (ConnectionError, OSError, smtplib.SMTPException) as exc:
        sock.close()
        if "timed out" in str(exc):  # smtplib wraps a read timeout in SMTPServerDisconnected
            return unreachable("SMTP relay", address, "timed out (no greeting)", timed_out=True, commands=cmds,
                               evidence=ev)
        text = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc).splitlines()[0][:150]
        return unreachable("SMTP relay", address, text, commands=cmds, hint=outbound, evidence=ev)
    conn.done()
    not_after = datetime.strptime(cert["notAfter"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc)
    days = (not_after - datetime.now(timezone.utc)).days
    ev.update(not_after=not_after.isoformat(), days_left=days,
              subject=dict(x[0] for x in cert.get("subject", ())).get("commonName"))
    if days < 14:
        return warn(f"SMTP relay {address} STARTTLS ok but its certificate expires in {days} days", evidence=ev,
                    commands=cmds)
    return ok(f"SMTP relay {address} offers STARTTLS ({ev['tls']}), certificate valid {days} more days",
              evidence=ev, commands=cmds)

