"""A Sentry web API stand-in (``/api/0``): the documented response shapes of the endpoints the
`sentry` layer reads, served from a state file (times kept as "minutes ago" so data is always fresh).

Routes (GET only; each cites its documentation page):
- ``/api/0/projects/{org}/{project}/`` -- https://docs.sentry.io/api/projects/retrieve-a-project/
  (scope project:read)
- ``/api/0/projects/{org}/{project}/issues/`` -- https://docs.sentry.io/api/events/list-a-projects-issues/
  (scope event:read; ``statsPeriod=24h`` adds ``stats["24h"]``: 24 hourly ``[timestamp, count]`` pairs)
- ``/api/0/organizations/{org}/stats_v2/`` --
  https://docs.sentry.io/api/organizations/retrieve-event-counts-for-an-organization-v2/
  (scope org:read; ``groupBy=outcome``: groups of ``{"by": {"outcome"}, "totals", "series"}``)
- ``/api/0/organizations/{org}/releases/`` -- https://docs.sentry.io/api/releases/list-an-organizations-releases/
- ``/api/0/organizations/{org}/releases/{version}/`` --
  https://docs.sentry.io/api/releases/retrieve-an-organizations-release/ (scope project:releases)

Auth: ``Authorization: Bearer <token>``; a wrong or revoked token gets 401 ``{"detail": "Invalid token"}``;
a token without the route's scope gets 403 ``{"detail": "You do not have permission to perform this action."}``
(https://docs.sentry.io/api/auth/ and https://docs.sentry.io/api/permissions/).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from .saas_stub import StubAPI, dispatch, route, route_methods

PREFIX = "/api/0"
ALL_SCOPES = ["project:read", "event:read", "org:read", "project:releases"]
OUTCOMES = ("accepted", "filtered", "rate_limited", "invalid", "abuse", "client_discard")


def iso(minutes_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - minutes_ago * 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_state(org: str = "learningequality", project: str = "studio", token: str = "lab-sentry-token",
                  release: str = "v2026.11.20") -> dict:
    """A healthy project: two steady old issues, every event accepted, the deployed release known."""
    steady = [3, 2, 4, 3, 2, 3, 5, 4, 3, 2, 3, 4, 3, 2, 3, 4, 3, 3, 2, 4, 3, 2, 3, 3]
    return {
        "token": token, "scopes": list(ALL_SCOPES), "organization": org,
        "project": {"id": "1252819", "slug": project, "name": "Studio", "platform": "python", "status": "active"},
        "issues": [
            {"id": "4100000001", "shortId": "STUDIO-1A2", "title": "OperationalError: could not serialize access",
             "culprit": "contentcuration.viewsets.sync.endpoint in sync", "level": "error",
             "first_seen_min": 60 * 24 * 30, "last_seen_min": 12, "hourly": steady, "firstRelease": "v2026.10.02"},
            {"id": "4100000002", "shortId": "STUDIO-1B7", "title": "TimeoutError: publish of channel took too long",
             "culprit": "contentcuration.utils.publish in publish_channel", "level": "warning",
             "first_seen_min": 60 * 24 * 9, "last_seen_min": 40, "hourly": [1, 0] * 12, "firstRelease": "v2026.11.02"},
        ],
        # events per hour by outcome, oldest first (24 values)
        "outcomes": {"accepted": [120] * 24, "filtered": [2] * 24, "rate_limited": [0] * 24},
        "releases": [{"version": release, "released_min": 60 * 24 * 2},
                     {"version": "v2026.11.02", "released_min": 60 * 24 * 20}],
    }


def _err(status: int, detail: str) -> tuple[int, dict]:
    return status, {"detail": detail}


def _issue_view(issue: dict, stats_period: str) -> dict:
    now = int(time.time()) // 3600 * 3600
    hourly = list(issue.get("hourly") or [0] * 24)[-24:]
    out = {"id": issue["id"], "shortId": issue["shortId"], "title": issue["title"], "culprit": issue["culprit"],
           "level": issue["level"], "status": "unresolved", "substatus": issue.get("substatus", "ongoing"),
           "count": str(issue.get("count", sum(hourly) + 500)), "userCount": issue.get("userCount", 7),
           "firstSeen": iso(issue["first_seen_min"]), "lastSeen": iso(issue["last_seen_min"]),
           "permalink": f"https://sentry.io/organizations/lab/issues/{issue['id']}/",
           "isUnhandled": True, "type": "error", "metadata": {"title": issue["title"]},
           "project": {"id": "1252819", "slug": "studio", "name": "Studio"},
           "firstRelease": {"version": issue.get("firstRelease")} if issue.get("firstRelease") else None}
    if stats_period == "24h":
        out["stats"] = {"24h": [[now - (23 - i) * 3600, n] for i, n in enumerate(hourly)]}
    return out


def _stats_v2(state: dict, query: dict) -> dict:
    now = int(time.time()) // 3600 * 3600
    intervals = [datetime.fromtimestamp(now - (23 - i) * 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                 for i in range(24)]
    groups = []
    for outcome, series in (state.get("outcomes") or {}).items():
        series = list(series)[-24:]
        groups.append({"by": {"outcome": outcome}, "totals": {"sum(quantity)": sum(series)},
                       "series": {"sum(quantity)": series}})
    return {"start": intervals[0], "end": datetime.fromtimestamp(now + 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "intervals": intervals, "groups": groups}


def _release_view(rel: dict) -> dict:
    return {"version": rel["version"], "shortVersion": rel["version"][:12], "ref": None, "url": None,
            "dateCreated": iso(rel["released_min"] + 5), "dateReleased": iso(rel["released_min"]),
            "newGroups": rel.get("newGroups", 0), "projects": [{"id": 1252819, "slug": "studio", "name": "Studio"}],
            "lastEvent": iso(3)}


_NOT_FOUND = _err(404, "The requested resource does not exist")
_FORBIDDEN = _err(403, "You do not have permission to perform this action.")


def _denied(req) -> tuple[int, dict] | None:
    """403 when the token lacks the route's scope (https://docs.sentry.io/api/permissions/)."""
    return _FORBIDDEN if req.lacks_scope(set(req.state.get("scopes") or [])) else None


def _ours(req, org: str, project: str | None = None) -> bool:
    """The organization (and project) in the path are the ones the state knows: else Sentry answers 404."""
    return org == req.state.get("organization") and (
        project is None or project == (req.state.get("project") or {}).get("slug"))


# --- the routes (below PREFIX), read by handle through saas_stub.dispatch ---------------------------------
def _project(req, org: str, project: str):
    if not _ours(req, org, project):
        return _NOT_FOUND
    return _denied(req) or (200, dict(req.state.get("project") or {},
                                      organization={"slug": org, "name": "Learning Equality"},
                                      dateCreated=iso(60 * 24 * 900), isMember=True, hasAccess=True))


def _issues(req, org: str, project: str):
    if not _ours(req, org, project):
        return _NOT_FOUND
    if (denied := _denied(req)):
        return denied
    query = req.query
    period = (query.get("statsPeriod") or ["24h"])[0]
    search = (query.get("query") or ["is:unresolved"])[0]
    age = re.search(r"firstSeen:-(\d+)([hmd])", search)  # https://docs.sentry.io/concepts/search/searchable-properties/issues/
    max_min = int(age.group(1)) * {"m": 1, "h": 60, "d": 1440}[age.group(2)] if age else None
    issues = [_issue_view(i, period) for i in req.state.get("issues", [])
              if max_min is None or i["first_seen_min"] <= max_min]
    if (query.get("sort") or ["date"])[0] == "new":
        issues.sort(key=lambda i: i["firstSeen"], reverse=True)
    else:
        issues.sort(key=lambda i: -sum(n for _, n in i.get("stats", {}).get("24h", [])))
    limit = int((query.get("limit") or ["100"])[0])
    return 200, issues[:limit]


def _stats(req, org: str):
    if not _ours(req, org):
        return _NOT_FOUND
    if not req.query.get("field") or not req.query.get("groupBy"):
        return _err(400, "At least one groupBy and field is required")
    return _denied(req) or (200, _stats_v2(req.state, req.query))


def _releases(req, org: str):
    if not _ours(req, org):
        return _NOT_FOUND
    if (denied := _denied(req)):
        return denied
    rels = sorted(req.state.get("releases", []), key=lambda r: r["released_min"])
    per_page = int((req.query.get("per_page") or ["100"])[0])
    return 200, [_release_view(r) for r in rels][:per_page]


def _release(req, org: str, version: str):
    if (denied := _denied(req)):  # Sentry checks this scope before it looks the release up
        return denied
    rel = next((r for r in req.state.get("releases", []) if r["version"] == version), None)
    if not _ours(req, org) or rel is None:
        return _NOT_FOUND
    return 200, _release_view(rel)


ROUTES = (
    # https://docs.sentry.io/api/projects/retrieve-a-project/
    route("GET HEAD", r"/projects/([^/]+)/([^/]+)/?", _project, scope="project:read"),
    # https://docs.sentry.io/api/events/list-a-projects-issues/
    route("GET HEAD", r"/projects/([^/]+)/([^/]+)/issues/?", _issues, scope="event:read"),
    # https://docs.sentry.io/api/organizations/retrieve-event-counts-for-an-organization-v2/
    route("GET HEAD", r"/organizations/([^/]+)/stats_v2/?", _stats, scope="org:read"),
    # https://docs.sentry.io/api/releases/list-an-organizations-releases/
    route("GET HEAD", r"/organizations/([^/]+)/releases/?", _releases, scope="project:releases"),
    # https://docs.sentry.io/api/releases/retrieve-an-organizations-release/
    route("GET HEAD", r"/organizations/([^/]+)/releases/([^/]+)/?", _release, scope="project:releases"),
)
_METHODS = route_methods(ROUTES)


def handle(state: dict, method: str, path: str, query: dict, headers: dict, body=None):
    """One request -> (status, JSON body): the method, then the token (https://docs.sentry.io/api/auth/),
    then the route."""
    if method not in _METHODS:
        return _err(405, f'Method "{method}" not allowed.')
    if headers.get("authorization", "") != f"Bearer {state.get('token')}" or state.get("revoked"):
        return _err(401, "Invalid token")
    if not path.startswith(PREFIX):
        return _NOT_FOUND
    return dispatch(ROUTES, state, method, path[len(PREFIX):], query, headers, body,
                    not_found=_NOT_FOUND, not_allowed=_err(405, f'Method "{method}" not allowed.'))


def deployed_release(kube_state: dict, default: str = "v2026.11.20") -> str:
    """The image tag of the container that runs gunicorn in the Kubernetes stand-in's state (the release
    Studio reports as RELEASE_COMMIT_SHA), so the lab's Sentry knows what the lab deploys."""
    from ...discovery.appdeploy import image_tag

    for ns in (kube_state.get("namespaces") or {}).values():
        for dep in ns.get("deployments") or []:
            for c in dep["spec"]["template"]["spec"].get("containers") or []:
                if "gunicorn" in " ".join(c.get("command") or []) and c.get("image"):
                    return image_tag(c["image"])
    return default


class SentryAPI(StubAPI):
    """The lab's Sentry. Faults: ``revoke()`` (401), ``set(scopes=[...])`` (403), ``exhaust_quota()``,
    ``error_spike()``; ``reset()`` restores health."""

    kind = "sentry-api"
    module = "sentry_api"

    def __init__(self, root, port: int = 0, organization: str = "learningequality", project: str = "studio",
                 token: str = "lab-sentry-token", release: str = "v2026.11.20", **options):
        super().__init__(root, port, organization=organization, project=project, token=token, release=release,
                         **options)
        self.organization, self.project, self.token, self.release = organization, project, token, release

    def default_state(self) -> dict:
        return default_state(self.organization, self.project, self.token, self.release)

    def revoke(self, on: bool = True) -> None:
        self.set(revoked=on)

    def exhaust_quota(self, on: bool = True) -> None:
        """The last two hours: every error event rate-limited (spike arrest / quota exhausted)."""
        def edit(s):
            if on:
                s["outcomes"]["accepted"][-2:] = [0, 0]
                s["outcomes"]["rate_limited"][-2:] = [340, 410]
            else:
                s["outcomes"] = default_state()["outcomes"]
        self.edit(edit)

    def error_spike(self, on: bool = True) -> None:
        """A release 45 minutes ago; 40 minutes ago a new issue appeared in it, 900 events since."""
        def edit(s):
            s["issues"] = [i for i in s["issues"] if i["id"] != "4100000099"]
            rel = next(r for r in s["releases"] if r["version"] == self.release)
            rel["released_min"] = 45 if on else 60 * 24 * 2
            if on:
                s["issues"].insert(0, {
                    "id": "4100000099", "shortId": "STUDIO-2C4", "level": "error", "substatus": "new",
                    "title": "AttributeError: 'NoneType' object has no attribute 'get_descendants'",
                    "culprit": "contentcuration.viewsets.contentnode in copy", "first_seen_min": 40,
                    "last_seen_min": 1, "hourly": [0] * 23 + [900], "count": 900, "userCount": 214,
                    "firstRelease": self.release})
        self.edit(edit)

    def profile(self) -> dict:
        return {"sentry": {"api_url": f"{self.url}{PREFIX}", "auth_token": self.token,
                           "organization": self.organization, "project": self.project}}
