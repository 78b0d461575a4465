"""``studiodoctor preflight``: before a run, who we are on each configured backend, what the checks need
(their own ``permissions=`` declarations, the source ``deploy/`` and ``studiodoctor.preflight.rbac`` use), what is
granted, which checks cannot work without the rest, and the exact grant to add.

One result per backend, run by the engine like checks (same deadlines, formats and exit codes):
``ok`` everything granted, ``fail`` something missing (the checks named will answer `error`),
``warn`` only optional permissions missing, ``error`` we could not tell (and why), ``skip`` not configured.

How each backend is asked, reading only:

- Redis: ``ACL WHOAMI``; ``ACL DRYRUN <user> <command> <key>`` per ACL rule when we may (Redis >= 7);
  else read commands are tried as the checks send them (PING, INFO, LLEN celery...), and the broadcast's
  writes are left `unknown` (trying them would write) with the DRYRUN line an admin can run.
- PostgreSQL: ``current_user``, its role memberships, ``pg_has_role(.., 'pg_monitor', 'member')``,
  ``has_table_privilege(.., 'SELECT')``.
- Kubernetes: SelfSubjectReview (``kubectl auth whoami``) and one SelfSubjectAccessReview per grant of
  ``studiodoctor.preflight.rbac.needed_grants`` (both POSTs the API server answers and never stores).
- GCS: the credentials' service account and the bucket's ``testIamPermissions``.
- CloudFlare: ``/user/tokens/verify``, the token's permission groups (``/user/tokens/<id>``) when the token
  may read them, else one GET per declared permission (403 = not granted).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, unquote, urlsplit

from ..model import MUTATING, READ_ONLY, Command, Reason, error, fail, ok, warn
from ..registry import Registry, default_registry

PREFLIGHT = Registry(loaded=True)
pf = PREFLIGHT.check


# --- what the checks declare --------------------------------------------------------------------

def declared(layers=None, ids=None, registry=None) -> dict[str, list[str]]:
    """permission -> ids of the checks that declare it (in declaration order)."""
    registry = registry or default_registry.load_plugins()
    out: dict[str, list[str]] = {}
    for chk in registry.checks.values():
        if (layers is not None and chk.layer not in layers) and (ids is None or chk.id not in ids):
            continue
        for perm in chk.permissions:
            out.setdefault(perm, []).append(chk.id)
    return out


def _entry(permission: str, needed_by, granted, how: str, grant: str = "", optional: bool = False,
           detail: str = "") -> dict:
    return {"permission": permission, "needed_by": sorted(set(needed_by)), "granted": granted, "how": how,
            "grant": grant, "optional": optional, **({"detail": detail} if detail else {})}


def _verdict(backend: str, identity: str, entries: list[dict], grant_lines: list[str], *, evidence=None,
             note: str = ""):
    """The backend's result from its permission entries (granted True/False/None)."""
    missing = [e for e in entries if e["granted"] is False]
    unknown = [e for e in entries if e["granted"] is None]
    required_missing = [e for e in missing if not e["optional"]]
    affected = sorted({c for e in missing for c in e["needed_by"]})
    ev = {"identity": identity, "permissions": entries, "checks_affected": affected,
          "grants": grant_lines, **(evidence or {})}
    counts = f"{len(entries) - len(missing) - len(unknown)} of {len(entries)} permissions granted"
    cmds = [Command(line, MUTATING, "the grant to add") for line in grant_lines]
    tail = f"; {note}" if note else ""
    if required_missing:
        return fail(f"{backend} as {identity}: {counts}; missing "
                    + ", ".join(e["permission"] for e in missing)
                    + f": {', '.join(affected)} will answer error{tail}", evidence=ev, reason=Reason.FORBIDDEN,
                    hint="grant:\n" + "\n".join(grant_lines), commands=cmds)
    if unknown:
        details = {e["how"] for e in unknown}
        if len(details) != 1:
            details = {e.get("detail") or e["how"] for e in unknown}
        named = ", ".join(e["permission"] for e in unknown[:6]) + (f" and {len(unknown) - 6} more"
                                                                 if len(unknown) > 6 else "")
        why = f" ({details.pop()})" if len(details) == 1 and not note else ""
        return error(f"{backend} as {identity}: {counts}; cannot tell for {named}{why}{tail}",
                     evidence=ev, reason=Reason.UNEXPECTED,
                     hint=("grant:\n" + "\n".join(grant_lines)) if grant_lines else "", commands=cmds)
    if missing:
        return warn(f"{backend} as {identity}: {counts}; optional missing: "
                    + ", ".join(e["permission"] for e in missing) + f" ({', '.join(affected)}){tail}",
                    evidence=ev, reason=Reason.FORBIDDEN, hint="grant:\n" + "\n".join(grant_lines), commands=cmds)
    return ok(f"{backend} as {identity}: {counts}{tail}", evidence=ev)


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# --- Redis ---------------------------------------------------------------------------------------

_RULE = re.compile(r"(?<![\w|])([+~&][^\s,;()]+)")
_WORD = re.compile(r"\b([A-Z]{3,})\b")
_NO_GRANT = {"auth", "hello"}   # commands every user may send (no ACL check)
PIDBOX_KEY = "x.reply.celery.pidbox"


def redis_rules(permissions) -> list[str]:
    """The ACL rules a set of declarations names: "+publish", "~celery*", and "LLEN" -> "+llen"."""
    rules: list[str] = []
    for perm in permissions:
        found = _RULE.findall(perm) or ["+" + w.lower() for w in _WORD.findall(perm)]
        for rule in found:
            if rule.lstrip("+") not in _NO_GRANT and rule not in rules:
                rules.append(rule)
    return rules


def _probe(rule: str, db: int) -> list[str] | None:
    """The command (with keys like the checks') whose permission stands for ``rule``; None for patterns
    whose command carries the key."""
    channel = f"/{db}.celery.pidbox"
    table = {
        "+ping": ["PING"], "+info": ["INFO", "server"], "+llen": ["LLEN", "celery"],
        "+lindex": ["LINDEX", "celery", "0"], "+hlen": ["HLEN", "unacked"], "+hget": ["HGET", "unacked", "x"],
        "+zcard": ["ZCARD", "unacked_index"], "+zrange": ["ZRANGE", "unacked_index", "0", "0"],
        "+publish": ["PUBLISH", channel, "x"], "+evalsha": ["EVALSHA", "0" * 40, "0"],
        "+script|load": ["SCRIPT", "LOAD", "return 1"], "+script|exists": ["SCRIPT", "EXISTS", "0" * 40],
        "+time": ["TIME"], "+sadd": ["SADD", "_kombu.binding.reply.celery.pidbox", "x"],
        "+zadd": ["ZADD", "_kombu.binding_deadlines", "1", "x"],
        "+srem": ["SREM", "_kombu.binding.reply.celery.pidbox", "x"], "+del": ["DEL", PIDBOX_KEY],
        "+brpop": ["BRPOP", PIDBOX_KEY, "1"], "+multi": ["MULTI"], "+exec": ["EXEC"],
        "~celery*": ["LLEN", "celery"], "~unacked*": ["HLEN", "unacked"],
        "~_kombu.binding_deadlines": ["ZCARD", "_kombu.binding_deadlines"],
        "~*.reply.celery.pidbox*": ["LLEN", PIDBOX_KEY + "\x06\x163"],
    }
    if rule.startswith("&"):
        return ["PUBLISH", rule[1:], "x"]
    return table.get(rule)


# Read commands the checks send anyway: without ACL DRYRUN we may try them (a NOPERM is the answer).
_TRY_READS = {"PING", "INFO", "LLEN", "LINDEX", "HLEN", "HGET", "ZCARD", "ZRANGE", "TIME"}


def _redis_client(url: str, timeout: float):
    import redis

    return redis.Redis.from_url(url, protocol=2, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=None, health_check_interval=0, decode_responses=True)


def redis_preflight(ctx, url: str, checks: dict[str, list[str]], backend: str):
    """The shared Redis part: identity, then each rule by DRYRUN, by trying a read, or unknown."""
    import redis

    from ..backends import grants

    parts = urlsplit(url)
    try:
        db = int((parts.path or "/0").strip("/") or 0)
    except ValueError:
        db = 0
    configured_user = unquote(parts.username) if parts.username else "default"
    address = f"{parts.hostname}:{parts.port or 6379}/{db}"
    client = _redis_client(url, ctx.timeout(margin=0.2))
    try:
        no_acl = False
        try:
            user = client.execute_command("ACL", "WHOAMI")
            how_id = "ACL WHOAMI"
        except redis.exceptions.NoPermissionError:
            user, how_id = configured_user, "from the URL: ACL WHOAMI not permitted"
        except redis.exceptions.ResponseError as exc:  # Redis < 6: no ACL, one password for everyone
            user, how_id, no_acl = "default", "no ACL on this server: its password grants every command", True
        identity = f"{user} ({how_id})"
        rules = []
        for perm, ids in checks.items():
            for rule in redis_rules([perm]):
                rules.append((rule, ids))
        merged: dict[str, list[str]] = {}
        for rule, ids in rules:
            merged.setdefault(rule, []).extend(ids)
        entries, missing_rules = [], []
        dryrun = True
        for rule, ids in merged.items():
            probe = _probe(rule, db)
            if probe is None:
                entries.append(_entry(rule, ids, None, "no probe for this rule", detail="no probe for this rule"))
                continue
            granted, how, detail = None, "", ""
            if no_acl:
                granted, how = True, "no ACL (Redis < 6): the password grants every command"
            elif dryrun:
                try:
                    answer = client.execute_command("ACL", "DRYRUN", user, *probe)
                    granted, how = answer in ("OK", b"OK"), "ACL DRYRUN " + " ".join(probe[:2])
                    detail = "" if granted else str(answer)[:200]
                    other = "" if granted else grants.redis_missing(str(answer))
                    if other.startswith("+") and other != rule:  # the probe's command itself is refused
                        granted, detail = None, f"cannot tell until {other} is granted"
                except redis.exceptions.NoPermissionError:
                    dryrun = False
                except redis.exceptions.ResponseError as exc:  # Redis < 7: no DRYRUN
                    dryrun, detail = False, _first_line(exc)
            if granted is None and not how and probe[0] in _TRY_READS:
                try:
                    client.execute_command(*probe)
                    granted, how = True, "tried " + " ".join(probe[:2])
                except redis.exceptions.NoPermissionError as exc:
                    granted, how, detail = False, "tried " + " ".join(probe[:2]), _first_line(exc)
                except redis.exceptions.ResponseError as exc:
                    granted, how, detail = True, "tried " + " ".join(probe[:2]) + f" (answered {_first_line(exc)})", ""
            if granted is None and not how:
                how = f"not tried: it would write, and ACL DRYRUN is not permitted to {user}"
                detail = (f"ACL DRYRUN is not permitted to {user}; an admin can run: ACL DRYRUN {user} "
                          + " ".join(p if p.isprintable() else repr(p) for p in probe))
            if granted is False:
                missing_rules.append(rule)
            entries.append(_entry(rule, ids, granted, how, grant=f"ACL SETUSER {user} {rule}" if granted is False
                                  else "", detail=detail))
        lines = [f"ACL SETUSER {user} {' '.join(missing_rules)}"] if missing_rules else []
        if not missing_rules and any(e["granted"] is None for e in entries):
            unknown = [e["permission"] for e in entries if e["granted"] is None]
            lines = [f"if missing: ACL SETUSER {user} {' '.join(unknown)}"]
        return _verdict(backend, identity, entries, lines, evidence={"address": address})
    except redis.exceptions.AuthenticationError as exc:
        return error(f"{backend}: Redis at {address} rejected our credentials: {_first_line(exc)}", reason=Reason.AUTH)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        return error(f"{backend}: no answer from Redis at {address}: {_first_line(exc)}", reason=Reason.TIMEOUT
                     if isinstance(exc, redis.exceptions.TimeoutError) else Reason.UNEXPECTED)
    except redis.exceptions.RedisError as exc:
        return error(f"{backend}: Redis at {address} answered: {_first_line(exc)}",
                     hint=grants.redis_acl(configured_user, str(exc))[1])
    finally:
        client.close()


@pf("redis.preflight", title="Redis: who we are and what the redis checks may do", needs=("redis.url",))
def preflight_redis(ctx):
    """The redis layer's user (ACL WHOAMI) and its grants against the redis checks' declarations."""
    return redis_preflight(ctx, str(ctx.config.get("url")), declared(layers={"redis"}), "redis")


@pf("celery.preflight", title="Celery broker: who we are and what the celery checks may do",
    needs=("redis.url",))
def preflight_celery(ctx):
    """The celery layer's broker user and the grants its reads and broadcasts need (CONTROL_ACL)."""
    url = str(ctx.setting("broker_url", "") or ctx.profile.value("redis.url") or "")
    checks = {p: ids for p, ids in declared(layers={"celery"}).items() if not p.startswith("SELECT on")}
    checks.setdefault("PING", []).append("redis.reachable")
    parts = urlsplit(url)
    db = (parts.path or "/0").strip("/") or "0"
    checks[f"&/{db}.celery.pidbox"] = [c for p, ids in checks.items() if "+publish" in p for c in ids]
    return redis_preflight(ctx, url, checks, "celery broker")


# --- PostgreSQL ----------------------------------------------------------------------------------

_TABLES = re.compile(r"^SELECT on (.+)$")


@pf("postgres.preflight", title="PostgreSQL: our role and what the postgres/celery checks may read",
    needs=("postgres.dsn",))
def preflight_postgres(ctx):
    """current_user, its role memberships, pg_monitor and SELECT on the Studio tables the checks read."""
    import psycopg

    dsn = str(ctx.config.get("dsn"))
    checks = declared(layers={"postgres"}, ids={c for ids in declared(layers={"celery"}).values() for c in ids})
    t = ctx.timeout(margin=0.2)
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(t)), autocommit=True,
                             options=f"-c statement_timeout={int(t * 1000)} -c default_transaction_read_only=on"
                             ) as conn:
            user, session_user, db = conn.execute(
                "SELECT current_user, session_user, current_database()").fetchone()
            roles = [r[0] for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'member') "
                "AND rolname <> current_user ORDER BY rolname").fetchall()]
            entries, lines = [], []
            for perm, ids in checks.items():
                if perm == "pg_monitor":
                    has = conn.execute("SELECT pg_has_role(current_user, 'pg_monitor', 'member')").fetchone()[0]
                    entries.append(_entry(perm, ids, bool(has), "pg_has_role(current_user, 'pg_monitor', 'member')"))
                    if not has:
                        lines.append(f"GRANT pg_monitor TO {user};")
                elif perm.startswith("CONNECT"):
                    has = conn.execute("SELECT has_database_privilege(current_database(), 'CONNECT')").fetchone()[0]
                    entries.append(_entry(perm, ids, bool(has), "has_database_privilege(.., 'CONNECT')"))
                    if not has:
                        lines.append(f'GRANT CONNECT ON DATABASE "{db}" TO {user};')
                elif m := _TABLES.match(perm):
                    missing = []
                    for table in (t.strip() for t in m.group(1).split(",")):
                        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
                        if not exists:
                            entries.append(_entry(f"SELECT on {table}", ids, None, "has_table_privilege",
                                                  detail=f"no table {table} in {db}: is this Studio's database?"))
                            continue
                        has = conn.execute("SELECT has_table_privilege(%s, 'SELECT')", (table,)).fetchone()[0]
                        entries.append(_entry(f"SELECT on {table}", ids, bool(has), "has_table_privilege(.., 'SELECT')"))
                        if not has:
                            missing.append(table)
                    if missing:
                        lines.append(f"GRANT SELECT ON {', '.join(missing)} TO {user};")
    except psycopg.OperationalError as exc:
        host = urlsplit(dsn).hostname if "://" in dsn else "?"
        return error(f"postgres: could not connect to {host}: {_first_line(exc)}", reason=Reason.UNEXPECTED)
    except psycopg.Error as exc:
        return error(f"postgres: {_first_line(exc)}", reason=Reason.UNEXPECTED)
    identity = user + (f" (session {session_user})" if session_user != user else "") + \
        f", member of {', '.join(roles) or 'no other role'}"
    return _verdict("postgres", identity, entries, lines, evidence={"database": db, "roles": roles})


# --- Kubernetes ----------------------------------------------------------------------------------

@pf("kubernetes.preflight", title="Kubernetes: who we are (SelfSubjectReview) and what the checks may list")
def preflight_kubernetes(ctx):
    """SelfSubjectReview, then a SelfSubjectAccessReview for every grant the RBAC manifest holds."""
    from . import rbac
    from ..backends import kubernetes as kb

    conn = kb.connection(ctx)
    if conn.status == "unconfigured":
        from ..model import skip

        return skip(f"kubernetes: {conn.detail}", reason=Reason.NOT_CONFIGURED)
    if conn.status != "ok":
        return error(f"kubernetes: {conn.detail}", reason=Reason.UNEXPECTED)
    ns, tns = kb.namespace(ctx), kb.traefik_namespace(ctx)
    needed = rbac.needed_grants(default_registry.load_plugins(), ns, tns)
    ApiException = kb.ApiError

    def post(kind: str, body: dict) -> dict:
        path = ("/apis/authentication.k8s.io/v1/selfsubjectreviews" if kind == "SelfSubjectReview"
                else "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        answer = kb.post(ctx, path, body)
        if not isinstance(answer, dict):
            raise ValueError(f"{kind} answered {type(answer).__name__}, not an object")
        return answer

    try:
        review = post("SelfSubjectReview", {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        status = review.get("status")
        info = status.get("userInfo") if isinstance(status, dict) else None
        info = info if isinstance(info, dict) else {}
        identity = f"{info.get('username', '?')} (SelfSubjectReview; groups {', '.join(map(str, info.get('groups') or [])) or '-'})"
    except ApiException as exc:
        info, identity = {}, f"unknown (SelfSubjectReview answered HTTP {exc.status}: needs Kubernetes >= 1.28)"
    except Exception as exc:  # noqa: BLE001 - network, or an answer that is not JSON
        return error(f"kubernetes: no usable answer from {conn.address}: {_first_line(exc)}", reason=Reason.UNEXPECTED)
    entries, missing = [], []
    for grant, ids in sorted(needed.items()):
        resource, _, subresource = grant.resource.partition("/")
        attrs = {"verb": grant.verb, "group": grant.group, "resource": resource,
                 **({"subresource": subresource} if subresource else {}), **({"name": grant.name} if grant.name else {})}
        if grant.scope:
            attrs["namespace"] = grant.scope
        label = f"{grant.verb} {grant.resource}{'.' + grant.group if grant.group else ''}" + (
            f" {grant.name}" if grant.name else "") + (f" in {grant.scope}" if grant.scope else " (cluster)")
        try:
            answer = post("SelfSubjectAccessReview", {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                           "spec": {"resourceAttributes": attrs}})
            status = answer.get("status")
            allowed = isinstance(status, dict) and status.get("allowed") is True
            entries.append(_entry(label, ids, allowed, "SelfSubjectAccessReview",
                                  optional=grant.group == "metrics.k8s.io" or grant.resource == "ingressclasses"
                                  or _proxy_optional(ctx, grant)))
            if not allowed:
                missing.append(grant)
        except ApiException as exc:
            entries.append(_entry(label, ids, None, "SelfSubjectAccessReview",
                                  detail=f"HTTP {exc.status} asking SelfSubjectAccessReview"))
        except Exception as exc:  # noqa: BLE001
            return error(f"kubernetes: no answer from {conn.address}: {_first_line(exc)}", reason=Reason.UNEXPECTED)
    lines = [role_yaml(missing, info.get("username"))] if missing else []
    return _verdict("kubernetes", identity, entries, lines, evidence={"api": conn.address})


def _proxy_optional(ctx, grant) -> bool:
    """The API server's proxy is the way in only where the profile gives no address: pods/proxy is needed
    without app.url or nginx.url; services/proxy only where an in-cluster doctor is asked."""
    if grant.resource == "pods/proxy":
        return all(ctx.profile.value(k) for k in ("app.url", "nginx.url"))
    return grant.resource == "services/proxy"


def role_yaml(missing, username: str | None) -> str:
    """A Role (per namespace) or ClusterRole with just the missing rules, bound to our identity."""
    import yaml

    from . import rbac

    user = username or "<our identity>"
    if user.startswith("system:serviceaccount:") and user.count(":") == 3:
        _, _, sa_ns, sa_name = user.split(":")
        subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns}
    else:
        subject = {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
    docs = []
    for scope in sorted({g.scope for g in missing}):
        kind = "Role" if scope else "ClusterRole"
        meta = {"name": f"{rbac.NAME}-read" + ("" if scope else "-cluster"), **({"namespace": scope} if scope else {})}
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
                     "rules": rbac._rules([g for g in missing if g.scope == scope])})
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind + "Binding", "metadata": dict(meta),
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": meta["name"]},
                     "subjects": [subject]})
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


# --- GCS -----------------------------------------------------------------------------------------

# the predefined role that carries each permission the gcs checks declare
GCS_ROLES = {"storage.objects.list": "roles/storage.objectViewer",
             "storage.objects.get": "roles/storage.objectViewer",
             "storage.buckets.get": "roles/storage.legacyBucketReader",
             "storage.buckets.getIamPolicy": "roles/storage.legacyBucketOwner"}


@pf("gcs.preflight", title="GCS: our service account and what it may do on the bucket", needs=("gcs.bucket",))
def preflight_gcs(ctx):
    """The credentials' service account and the bucket's testIamPermissions for the declared permissions."""
    from ..backends import gcs as gb

    bucket_name = str(ctx.config.get("bucket"))
    perms: dict[str, list[str]] = {}
    optional: set[str] = set()
    for perm, ids in declared(layers={"gcs"}).items():
        name = perm.split()[0]
        if name.startswith("storage."):
            perms.setdefault(name, []).extend(ids)
            if "optional" in perm:
                optional.add(name)
    try:
        client = gb.client(ctx)
    except Exception as exc:  # noqa: BLE001 - the gcs layer's own _Unusable carries its result
        return getattr(exc, "result", None) or error(f"gcs: {_first_line(exc)}", reason=Reason.AUTH)
    creds = getattr(client, "_credentials", None)
    email = getattr(creds, "service_account_email", None)
    if not isinstance(email, str) or not email or email == "default":
        email = None
    kind = type(creds).__name__
    identity = email or ("anonymous (no credentials)" if kind == "AnonymousCredentials" else f"{kind} (no e-mail)")
    try:
        granted = set(client.bucket(bucket_name).test_iam_permissions(sorted(perms), timeout=ctx.timeout(margin=0.2)))
    except Exception as exc:  # noqa: BLE001 - the endpoint may not implement it (fake-gcs-server does not)
        code = getattr(exc, "code", None) or getattr(getattr(exc, "response", None), "status_code", None)
        answer = f"HTTP {code}" if code else f"{type(exc).__name__}: {_first_line(exc)[:100]}"
        entries = [_entry(p, ids, None, "testIamPermissions", optional=p in optional, detail=answer)
                   for p, ids in perms.items()]
        return _verdict("gcs", identity, entries, [], evidence={"bucket": bucket_name},
                        note=f"gs://{bucket_name} did not answer testIamPermissions ({answer}): this endpoint "
                             "cannot say (fake-gcs-server does not implement it)" if code == 404 else
                             f"gs://{bucket_name} did not answer testIamPermissions ({answer})")
    entries = [_entry(p, ids, p in granted, "testIamPermissions", optional=p in optional) for p, ids in perms.items()]
    member = f"serviceAccount:{email}" if email else "<member>"
    roles = sorted({GCS_ROLES.get(p, "<a role with " + p + ">") for p, ids in perms.items() if p not in granted})
    lines = [f"gcloud storage buckets add-iam-policy-binding gs://{bucket_name} --member={member} --role={r}"
             for r in roles]
    return _verdict("gcs", identity, entries, lines, evidence={"bucket": bucket_name})


# --- CloudFlare ----------------------------------------------------------------------------------

# a GET that needs exactly the declared permission (403 without it)
CF_PROBES = {"Zone:Read": "/zones/{zone}", "Zone Settings:Read": "/zones/{zone}/settings/ssl",
             "DNS:Read": "/zones/{zone}/dns_records?per_page=1",
             "Cache Rules:Read": "/zones/{zone}/rulesets/phases/http_request_cache_settings/entrypoint"}


@pf("cloudflare.preflight", title="CloudFlare: the API token and its permission groups",
    needs=("cloudflare.api_token", "cloudflare.zone"))
def preflight_cloudflare(ctx):
    """The token's verify answer, then its permission groups (or one read per declared permission)."""
    from ..probes.http import describe_error

    import urllib.error
    import urllib.request

    cfg = ctx.config
    api = str(cfg.get("api_url") or "https://api.cloudflare.com/client/v4").rstrip("/")
    token = str(cfg.get("api_token"))

    def get(path: str) -> tuple[int, dict]:
        req = urllib.request.Request(api + path, headers={"Authorization": f"Bearer {token}",
                                                          "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=max(0.5, ctx.timeout(margin=0.2))) as resp:
                return resp.status, json.loads(resp.read(1 << 20) or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read(1 << 20) or b"{}")
            except ValueError:
                return exc.code, {}

    try:
        status, body = get("/user/tokens/verify")
    except (OSError, ValueError) as exc:
        return error(f"cloudflare: no readable answer from {api}: {describe_error(exc)[1]}", reason=Reason.UNEXPECTED)
    result = body.get("result") if isinstance(body, dict) else None
    if status != 200 or not isinstance(result, dict):
        return error(f"cloudflare: /user/tokens/verify answered HTTP {status}: the token is not valid",
                     reason=Reason.AUTH, hint="create a token (My Profile, API Tokens) and set cloudflare.api_token")
    token_id, token_status = str(result.get("id", "?")), str(result.get("status", "?"))
    identity = f"token id {token_id} ({token_status}, /user/tokens/verify)"
    groups: list[str] | None = None
    try:
        st, details = get(f"/user/tokens/{quote(token_id)}")
        if st == 200 and isinstance(details, dict) and isinstance(details.get("result"), dict):
            groups = [str(g.get("name")) for p in details["result"].get("policies") or [] if isinstance(p, dict)
                      for g in p.get("permission_groups") or [] if isinstance(g, dict)]
    except (OSError, ValueError, TypeError, AttributeError):  # no answer, or not the documented shape
        groups = None
    zone_name = str(cfg.get("zone"))
    entries, missing = [], []
    zone_id = None
    for perm, ids in declared(layers={"cloudflare"}).items():
        if perm not in CF_PROBES:
            continue
        if groups is not None:
            name = perm.replace(":", " ")  # "Zone Settings:Read" is the group "Zone Settings Read"
            has = any(g.lower() == name.lower() for g in groups)
            entries.append(_entry(perm, ids, has, "the token's permission groups"))
        else:
            try:
                if zone_id is None:
                    st, z = get(f"/zones?name={quote(zone_name)}")
                    items = z.get("result") if isinstance(z, dict) else None
                    first = items[0] if st == 200 and isinstance(items, list) and items else None
                    zone_id = str(first.get("id") or "") if isinstance(first, dict) else ""
                if not zone_id:
                    entries.append(_entry(perm, ids, False if perm == "Zone:Read" else None, "GET /zones?name=",
                                          detail=f"zone {zone_name} not visible to this token"))
                else:
                    st, _ = get(CF_PROBES[perm].format(zone=zone_id))
                    entries.append(_entry(perm, ids, None if st not in (200, 403, 404) else st != 403,
                                          f"GET {CF_PROBES[perm].split('?')[0]}", detail=f"HTTP {st}"))
            except (OSError, ValueError) as exc:
                entries.append(_entry(perm, ids, None, "GET", detail=describe_error(exc)[1]))
        if entries[-1]["granted"] is False:
            missing.append(perm)
    lines = ([f"edit the token (My Profile > API Tokens > {token_id}): add Zone permissions "
              + ", ".join(missing) + f" on zone {zone_name}"] if missing else [])
    note = "" if groups is not None else "permission groups not readable by this token: each probed with a read"
    return _verdict("cloudflare", identity, entries, lines, note=note, evidence={"permission_groups": groups})


# --- the run -------------------------------------------------------------------------------------

def run(profile, layers=(), *, timeout=None):
    """Run the preflight of every backend (or of ``layers``); a Report like ``check``'s."""
    from .. import engine, runner

    chosen = [c for c in PREFLIGHT.checks.values() if not layers or c.layer in layers]
    real = default_registry.load_plugins()
    runner.preload([c for c in real.checks.values() if c.layer in {x.layer for x in chosen}])
    report = engine.run(profile, chosen, command="preflight", timeout=timeout)
    return report
