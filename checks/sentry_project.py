"""Layer `sentry`: what Sentry knows about Studio's Python errors, read with httpx from Sentry's web API
(``sentry.api_url``, an auth token with read scopes): the project is readable, unresolved issues new or
spiking in the last hour, events dropped by rate limits (errors lost silently), and the release Sentry
sees vs the image tag the app pods run (Studio reports ``release = RELEASE_COMMIT_SHA``, the image tag)."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

from studiodoctor.model import Command, Reason, error, fail, ok, skip, warn
from studiodoctor.registry import check
from studiodoctor.probes.saasapi import Stop, call, guard, unexpected

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx", "studiodoctor.backends.kubernetes")  # the app's Deployment (appdeploy)

PROJECT = "sentry.project"
NEW_ISSUES = "sentry.new_issues"
EVENTS_DROPPED = "sentry.events_dropped"
RELEASE = "sentry.release"

NEEDS = ("sentry.auth_token", "sentry.organization", "sentry.project")
TOKEN_ENV = "$SENTRY_AUTH_TOKEN"
AUTH_HINT = ("Create a new auth token with read scopes (project:read, event:read, org:read, project:releases) "
             "in Sentry, Settings, Auth Tokens, and set it in sentry.auth_token ($SENTRY_AUTH_TOKEN).")


def _api(ctx) -> str:
    return (ctx.section("sentry").get("api_url") or "https://sentry.io/api/0").rstrip("/")


def _slugs(ctx) -> tuple[str, str]:
    cfg = ctx.section("sentry")
    return quote(str(cfg["organization"]), safe=""), quote(str(cfg["project"]), safe="")


def _curl(ctx, path: str) -> Command:
    return Command(f'curl -sS -H "Authorization: Bearer {TOKEN_ENV}" "{_api(ctx)}{path}"')


def _get(ctx, path: str, what: str, scope: str, params: dict | None = None, ok_statuses=(200,)):
    token = ctx.section("sentry")["auth_token"]
    status, body, _ = call(ctx, "Sentry", "GET", _api(ctx) + path, headers={"Authorization": f"Bearer {token}"},
                           params=params, what=what, permission=f"the {scope} scope", auth_hint=AUTH_HINT,
                           ok_statuses=ok_statuses)
    return status, body


def _project(ctx) -> dict:
    org, proj = _slugs(ctx)

    def fetch():
        status, body = _get(ctx, f"/projects/{org}/{proj}/", f"project {org}/{proj}", "project:read",
                            ok_statuses=(200, 404))
        if status == 404:
            raise Stop(error(f"project {org}/{proj} not found: no such project in organization {org}, or the token "
                             "belongs to another organization", evidence={"status": 404}, reason=Reason.UNEXPECTED,
                             hint="Check sentry.organization and sentry.project (the slugs in the project's URL).",
                             commands=[_curl(ctx, f"/organizations/{org}/projects/")]))
        if not isinstance(body, dict) or "id" not in body:
            raise unexpected("Sentry", "the project", body, "an object with id")
        return body

    return ctx.shared.get("sentry:project", fetch)


def _age_min(stamp) -> float | None:
    try:
        then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (datetime.now(timezone.utc) - then).total_seconds() / 60


# ---------------------------------------------------------------------------------------------- checks
@check(PROJECT, title="Project readable with our token", needs=NEEDS, permissions=("project:read",), smoke=True)
@guard
def check_project(ctx):
    """The project (`sentry.organization`/`sentry.project`) exists and our auth token can read it.

    401 means the token is invalid or revoked; 403 names the missing scope (project:read). Until this
    passes nothing Sentry knows can be read: an error (could not look), never "no errors"."""
    p = _project(ctx)
    org, proj = _slugs(ctx)
    return ok(f"project {org}/{p.get('slug', proj)} (id {p['id']}) readable",
              evidence={"id": p["id"], "slug": p.get("slug"), "status": p.get("status"),
                        "platform": p.get("platform")}, commands=[_curl(ctx, f"/projects/{org}/{proj}/")])


@check(NEW_ISSUES, title="No unresolved issue new or spiking in the last hour", needs=NEEDS,
       depends_on=(PROJECT,), permissions=("event:read",),
       explained_by=("postgres.reachable", "postgres.connections", "redis.reachable", "redis.memory"))
@guard
def check_new_issues(ctx):
    """Unresolved issues first seen in the last hour (`firstSeen:-1h`), or whose last hour is `sentry.spike_factor` (5) times
    their hourly average of the previous day, with at least `sentry.min_events` (10) events.

    A new top issue is the first thing to read for `python-error`: its title, culprit and first release
    name the code path users hit. Open its permalink for the traceback. When PostgreSQL or Redis is broken
    the spike (OperationalError, ConnectionError) is their consequence, and the runbook says so."""
    org, proj = _slugs(ctx)
    min_events = int(ctx.setting("min_events", 10))
    factor = float(ctx.setting("spike_factor", 5))
    issues: list = []
    # the most frequent of the day, and every issue first seen in the last hour (a new one may be rarer)
    for query, sort in (("is:unresolved", "freq"), ("is:unresolved firstSeen:-1h", "new")):
        params = {"query": query, "statsPeriod": "24h", "sort": sort, "limit": 25}
        _, page = _get(ctx, f"/projects/{org}/{proj}/issues/", "the project's issues", "event:read", params)
        if not isinstance(page, list) or not all(isinstance(i, dict) for i in page):
            raise unexpected("Sentry", "the project's issues", page, "a list of issues")
        seen = {i.get("id") for i in issues}
        issues += [i for i in page if i.get("id") not in seen]
    rows, bad = [], []
    for issue in issues:
        try:
            series = [int(n) for _, n in issue["stats"]["24h"]]
        except (KeyError, TypeError, ValueError):
            raise unexpected("Sentry", "the issues' 24h stats", issue, "stats['24h'] as [timestamp, count] pairs")
        last, before = (series[-1] if series else 0), series[:-1]
        mean = sum(before) / len(before) if before else 0.0
        age = _age_min(issue.get("firstSeen"))
        row = {"issue": issue.get("shortId"), "title": str(issue.get("title", ""))[:90],
               "culprit": str(issue.get("culprit", ""))[:80], "last_hour": last, "hourly_mean_before": round(mean, 1),
               "first_seen_min_ago": round(age) if age is not None else None,
               "first_release": (issue.get("firstRelease") or {}).get("version"), "link": issue.get("permalink")}
        rows.append(row)
        if last >= min_events and age is not None and age <= 60:
            bad.append(("new", row))
        elif last >= min_events and last >= factor * max(mean, 1.0):
            bad.append(("spiking", row))
    ev = {"unresolved_seen_24h": len(issues), "top": rows[:5]}
    cmds = [_curl(ctx, f"/projects/{org}/{proj}/issues/?query=is:unresolved&statsPeriod=24h&sort=freq")]
    if bad:
        kind, r = bad[0]
        since = (f"first seen {r['first_seen_min_ago']} min ago" if kind == "new"
                 else f"{r['last_hour']} events in the last hour vs {r['hourly_mean_before']}/h the day before")
        rel = f" in release {r['first_release']}" if r["first_release"] and kind == "new" else ""
        ev["new_or_spiking"] = [dict(row, kind=k) for k, row in bad]
        return fail(f"{kind} issue {r['issue']}{rel}: {r['title']} ({since}, {r['last_hour']} events in the last hour)",
                    evidence=ev, commands=cmds + ([Command(f"# open {r['link']}")] if r["link"] else []),
                    hint=f"Read the traceback of {r['issue']} (culprit {r['culprit']}). A new issue right after a "
                         "release points at that deploy: roll back or hotfix.")
    top = f"; top: {rows[0]['issue']} {rows[0]['title']} ({rows[0]['last_hour']} in the last hour)" if rows else ""
    return ok(f"no new or spiking unresolved issue ({len(issues)} unresolved seen in 24 h){top}", evidence=ev,
              commands=cmds)


def _outcomes(body) -> dict[str, list[int]]:
    if not isinstance(body, dict) or not isinstance(body.get("groups"), list):
        raise unexpected("Sentry", "event stats", body, "an object with groups")
    out = {}
    for g in body["groups"]:
        try:
            out[g["by"]["outcome"]] = [int(n or 0) for n in g["series"]["sum(quantity)"]]
        except (KeyError, TypeError, ValueError):
            raise unexpected("Sentry", "event stats groups", g, "by.outcome and series['sum(quantity)']")
    return out


@check(EVENTS_DROPPED, title="Error events accepted, not dropped by rate limits", needs=NEEDS, depends_on=(PROJECT,),
       permissions=("org:read",))
@guard
def check_events_dropped(ctx):
    """Error events of the project by outcome over the last day (stats_v2): accepted vs rate_limited/abuse.

    Events rate-limited in the last hour mean the quota (or a spike-protection limit) is exhausted:
    Studio's errors are being thrown away and Sentry looks quiet. A fail in the last hour, a warning if
    it happened earlier in the day. Fix: raise the quota or on-demand budget, or filter noisy errors."""
    org, _ = _slugs(ctx)
    project_id = _project(ctx)["id"]
    params = {"field": "sum(quantity)", "groupBy": "outcome", "category": "error", "project": project_id,
              "statsPeriod": "24h", "interval": "1h"}
    _, body = _get(ctx, f"/organizations/{org}/stats_v2/", "event stats", "org:read", params)
    by = _outcomes(body)
    dropped_keys = ("rate_limited", "abuse")
    last = {k: (v[-1] if v else 0) for k, v in by.items()}
    total = {k: sum(v) for k, v in by.items()}
    dropped_hour = sum(last.get(k, 0) for k in dropped_keys)
    dropped_day = sum(total.get(k, 0) for k in dropped_keys)
    ev = {"last_hour": last, "last_24h": total}
    cmds = [_curl(ctx, f"/organizations/{org}/stats_v2/?field=sum(quantity)&groupBy=outcome&category=error"
                       f"&project={project_id}&statsPeriod=24h&interval=1h")]
    hint = ("Sentry is discarding errors: raise the error quota / on-demand budget (Settings, Subscription) or "
            "add inbound filters and sampling for the noisiest issue.")
    if dropped_hour:
        return fail(f"{dropped_hour} error events dropped (rate limited) in the last hour vs {last.get('accepted', 0)} "
                    "accepted: the quota is exhausted and errors are lost silently", evidence=ev, commands=cmds,
                    hint=hint)
    if dropped_day:
        return warn(f"{dropped_day} error events dropped (rate limited) in the last 24 h, none in the last hour",
                    evidence=ev, commands=cmds, hint=hint)
    return ok(f"{total.get('accepted', 0)} error events accepted in 24 h, none rate limited", evidence=ev,
              commands=cmds)


def _deployed_tag(ctx):
    """(deployment, image, tag) of the app container; a Result when it cannot tell."""
    from studiodoctor.discovery.appdeploy import app_container, image_tag

    found = app_container(ctx)
    if not isinstance(found, tuple):
        return found
    name, c = found
    if not c.get("image"):
        return error(f"deployment {name} has no container image to compare", evidence={"deployment": name})
    return name, c["image"], image_tag(c["image"])


@check(RELEASE, title="Sentry knows the release the app pods run", needs=NEEDS, depends_on=(PROJECT,),
       permissions=("project:releases", "list deployments.apps"))
@guard
def check_release(ctx):
    """The image tag of the app container (`kubernetes.app_deployment`, container `app`; override with
    `sentry.deployment`/`sentry.container`) is a release Sentry knows, ideally its latest.

    Studio builds its image with `COMMIT_SHA` as tag and reports `release = RELEASE_COMMIT_SHA` to Sentry:
    a deployed tag Sentry has never seen means `RELEASE_COMMIT_SHA` is not set right in that image, and
    the new deploy's errors are filed under another release. Skipped when Kubernetes is not configured."""
    org, _ = _slugs(ctx)
    project_id = _project(ctx)["id"]
    _, rels = _get(ctx, f"/organizations/{org}/releases/", "releases", "project:releases",
                   {"project": project_id, "per_page": 5})
    if not isinstance(rels, list) or any(not isinstance(r, dict) or "version" not in r for r in rels):
        raise unexpected("Sentry", "releases", rels, "a list of releases with version")
    latest = rels[0]["version"] if rels else None
    deployed = _deployed_tag(ctx)
    if not isinstance(deployed, tuple):
        deployed.evidence.setdefault("latest_release", latest)
        return deployed
    dep, image, tag = deployed
    ev = {"deployment": dep, "image": image, "deployed_tag": tag, "latest_release": latest,
          "recent_releases": [r["version"] for r in rels]}
    cmds = [_curl(ctx, f"/organizations/{org}/releases/?project={project_id}&per_page=5")]
    match = lambda v: v == tag or (len(tag) >= 7 and str(v).startswith(tag)) or (len(str(v)) >= 7 and tag.startswith(str(v)))  # noqa: E731
    if latest is not None and match(latest):
        return ok(f"deployed {tag} is Sentry's latest release", evidence=ev, commands=cmds)
    status, _ = _get(ctx, f"/organizations/{org}/releases/{quote(tag, safe='')}/", f"release {tag}",
                     "project:releases", ok_statuses=(200, 404))
    if status == 200:
        return ok(f"deployed {tag} is a release Sentry knows (its latest is {latest})", evidence=ev, commands=cmds)
    return warn(f"deployed image tag {tag} is not a release Sentry knows (latest: {latest}): RELEASE_COMMIT_SHA is "
                "likely wrong in the deployed image, errors are filed under another release", evidence=ev,
                commands=cmds, hint="Build the image with --build-arg COMMIT_SHA=<sha> (RELEASE_COMMIT_SHA) and "
                                    "create the release in Sentry on deploy (sentry-cli releases new/finalize).")

