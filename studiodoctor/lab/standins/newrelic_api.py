"""A New Relic NerdGraph stand-in (``POST /graphql``, header ``API-Key``): it answers the GraphQL
*queries* the `newrelic` layer sends with NerdGraph's documented response shapes. Not a GraphQL
engine: it recognises the two fields the layer uses, keeps the aliases, and computes NRQL answers
from a state file (times kept as "minutes ago").

- ``actor { entitySearch(query: "...") { results { entities { guid name reporting ... } } } }`` --
  https://docs.newrelic.com/docs/apis/nerdgraph/examples/nerdgraph-entities-api-tutorial/
- ``actor { account(id: N) { alias: nrql(query: "...") { results } } }`` --
  https://docs.newrelic.com/docs/apis/nerdgraph/examples/nerdgraph-nrql-tutorial/
  NRQL: ``FROM Transaction`` aggregates (count, percentage, apdex, percentile, latest(timestamp)) over
  ``SINCE n minutes ago [UNTIL m minutes ago]``; ``FROM Deployment`` rows (legacy deployment markers,
  https://docs.newrelic.com/docs/change-tracking/query-data/).
- A wrong key: HTTP 401 with ``{"errors": [{"message": ...}]}``
  (https://docs.newrelic.com/docs/apis/nerdgraph/get-started/introduction-new-relic-nerdgraph/);
  an account the key cannot see: 200 with ``data: null`` and a GraphQL ``errors`` entry.
"""

from __future__ import annotations

import re
import time

from .saas_stub import StubAPI

HEALTHY_NOW = {"throughput": 1800, "error_rate": 0.4, "apdex": 0.96, "p95": 0.42}
HEALTHY_DAY_AGO = {"throughput": 1700, "error_rate": 0.5, "apdex": 0.95, "p95": 0.45}
DEPLOY_SUSPECT = "v2026.12.06-rc1"


def default_state(account_id: int = 1234567, app_name: str = "studio-lab", api_key: str = "NRAK-LABKEY0000000000000000") -> dict:
    return {"api_key": api_key, "account_id": account_id,
            "apps": [{"name": app_name, "guid": "MTIzNDU2N3xBUE18QVBQTElDQVRJT058OTg3NjU0",
                      "applicationId": 987654, "language": "python", "silent_min": 0.2}],
            "now": dict(HEALTHY_NOW), "day_ago": dict(HEALTHY_DAY_AGO),
            "deployments": [{"revision": "v2026.11.20", "ago_min": 60 * 24 * 2, "user": "cloudbuild",
                             "description": "helm upgrade master"}]}


def _error(status: int, message: str, cls: str = "") -> tuple[int, dict]:
    err = {"message": message}
    if cls:
        err["extensions"] = {"errorClass": cls}
    return status, {"errors": [err], "data": None}


def _window(nrql: str) -> tuple[float, float]:
    since = re.search(r"(?i)SINCE\s+(\d+)\s+minutes?\s+ago", nrql)
    until = re.search(r"(?i)UNTIL\s+(\d+)\s+minutes?\s+ago", nrql)
    day = re.search(r"(?i)SINCE\s+(\d+)\s+days?\s+ago", nrql)
    start = float(since.group(1)) if since else (float(day.group(1)) * 1440 if day else 60.0)
    return start, float(until.group(1)) if until else 0.0


def answer_nrql(state: dict, nrql: str) -> list[dict]:
    """The ``results`` of one NRQL query against the state."""
    app_m = re.search(r"appName\s*=\s*'([^']*)'", nrql)
    app = next((a for a in state.get("apps", []) if app_m and a["name"] == app_m.group(1)), None)
    start, end = _window(nrql)
    now_ms = time.time() * 1000
    if re.search(r"(?i)FROM\s+Deployment", nrql):
        rows = [{"timestamp": now_ms - d["ago_min"] * 60000, "revision": d["revision"], "user": d.get("user"),
                 "description": d.get("description"), "appName": app["name"] if app else None}
                for d in sorted(state.get("deployments", []), key=lambda d: d["ago_min"]) if d["ago_min"] <= start]
        limit = re.search(r"(?i)LIMIT\s+(\d+)", nrql)
        return rows[: int(limit.group(1))] if (limit and app) else (rows if app else [])
    silent = float(app["silent_min"]) if app else float("inf")
    has_data = app is not None and silent < start
    aliases = re.findall(r"(?i)\)\s+AS\s+'?(\w+)'?", nrql)
    metrics = state.get("day_ago" if start >= 1440 else "now", {})
    out: dict = {}
    for alias in aliases:
        if alias == "last_seen":
            out[alias] = (now_ms - silent * 60000) if has_data else None
        elif alias == "n":
            out[alias] = int(metrics.get("throughput", 0) * (start - max(end, silent if app else 0)) / 30) if has_data else 0
        elif alias == "error_rate":
            out[alias] = metrics.get("error_rate") if has_data else None
        elif alias == "apdex":
            score = metrics.get("apdex")
            out[alias] = ({"score": score, "s": 900, "t": 40, "f": 10, "count": 950} if has_data
                          else {"score": None, "s": 0, "t": 0, "f": 0, "count": 0})
        elif alias == "p95":
            out[alias] = {"95": metrics.get("p95") if has_data else None}
        elif alias == "throughput":
            out[alias] = metrics.get("throughput") if has_data else 0
    return [out]


def handle(state: dict, method: str, path: str, query: dict, headers: dict, body=None):
    if path.rstrip("/") != "/graphql":
        return 404, {"errors": [{"message": "Not Found"}]}
    if method != "POST":
        return 405, {"errors": [{"message": "NerdGraph expects POST with a JSON body"}]}
    if headers.get("api-key") != state.get("api_key"):
        return _error(401, "Invalid API key", "UNAUTHORIZED")
    doc = (body or {}).get("query") if isinstance(body, dict) else None
    if not isinstance(doc, str):
        return _error(400, "Must provide query string.")
    if re.match(r"\s*mutation\b", doc):
        return _error(200, "The lab stand-in answers queries only")
    actor: dict = {}
    if (m := re.search(r'entitySearch\s*\(\s*query:\s*"([^"]*)"', doc)):
        name = re.search(r"name\s*=\s*'([^']*)'", m.group(1))
        ents = [{"guid": a["guid"], "name": a["name"], "accountId": state["account_id"], "domain": "APM",
                 "type": "APPLICATION", "entityType": "APM_APPLICATION_ENTITY",
                 "reporting": float(a["silent_min"]) < 10, "alertSeverity": "NOT_ALERTING",
                 "applicationId": a["applicationId"], "language": a["language"]}
                for a in state.get("apps", []) if name and a["name"] == name.group(1)]
        actor["entitySearch"] = {"count": len(ents), "results": {"entities": ents, "nextCursor": None}}
    if (m := re.search(r"account\s*\(\s*id:\s*(\d+)\s*\)", doc)):
        if int(m.group(1)) != int(state.get("account_id", 0)):
            return _error(200, f"Not authorized to access account {m.group(1)}", "FORBIDDEN")
        account = {}
        for alias, nrql in re.findall(r'(?:(\w+)\s*:\s*)?nrql\s*\(\s*query:\s*"((?:[^"\\]|\\.)*)"', doc):
            account[alias or "nrql"] = {"results": answer_nrql(state, nrql.replace('\\"', '"'))}
        actor["account"] = account
    return 200, {"data": {"actor": actor}}


class NewRelicAPI(StubAPI):
    """The lab's NerdGraph. Faults: ``agent_silent()`` (no data for 3 h: the agent stopped reporting),
    ``p95_regression()`` (p95 five times a day earlier's), ``errors_after_deploy()`` (a deployment marker
    20 min ago, ten times the error rate of a day earlier)."""

    kind = "newrelic-api"
    module = "newrelic_api"

    def __init__(self, root, port: int = 0, account_id: int = 1234567, app_name: str = "studio-lab",
                 api_key: str = "NRAK-LABKEY0000000000000000", **options):
        super().__init__(root, port, account_id=account_id, app_name=app_name, api_key=api_key, **options)
        self.account_id, self.app_name, self.api_key = account_id, app_name, api_key

    def default_state(self) -> dict:
        return default_state(self.account_id, self.app_name, self.api_key)

    def agent_silent(self, on: bool = True) -> None:
        self.edit(lambda s: s["apps"][0].__setitem__("silent_min", 180 if on else 0.2))

    def p95_regression(self, on: bool = True) -> None:
        """The last 30 minutes' p95 is five times a day earlier's (and apdex falls with it)."""
        def edit(state):
            state["now"]["p95"] = round(HEALTHY_DAY_AGO["p95"] * 5, 3) if on else HEALTHY_NOW["p95"]
            state["now"]["apdex"] = 0.71 if on else HEALTHY_NOW["apdex"]
        self.edit(edit)

    def errors_after_deploy(self, on: bool = True) -> None:
        """A release deployed 20 minutes ago, and since then ten times a day earlier's error rate."""
        def edit(state):
            rate = HEALTHY_DAY_AGO["error_rate"] * 10 if on else HEALTHY_NOW["error_rate"]
            state["now"]["error_rate"] = round(rate, 2)
            state["deployments"] = [d for d in state["deployments"] if d.get("revision") != DEPLOY_SUSPECT]
            if on:
                state["deployments"].append({"revision": DEPLOY_SUSPECT, "ago_min": 20, "user": "cloudbuild",
                                             "description": "helm upgrade master"})
        self.edit(edit)

    def profile(self) -> dict:
        return {"newrelic": {"api_url": f"{self.url}/graphql", "api_key": self.api_key,
                             "account_id": str(self.account_id), "app_name": self.app_name}}
