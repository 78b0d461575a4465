"""Layer `newrelic`: Studio's APM application as New Relic sees it, read with httpx from NerdGraph
(GraphQL; a user key in ``newrelic.api_key``): the agent is reporting, the golden signals of the last
30 minutes vs the same window a day earlier (NRQL), and the last deployment marker.

NerdGraph only takes POST: the layer sends GraphQL *queries* (never a mutation; ``saasapi.call`` refuses
one), which read and change nothing."""

from __future__ import annotations

import re
import time

from studiodoctor.model import Command, Reason, error, fail, ok, warn
from studiodoctor.registry import check
from studiodoctor.probes.saasapi import Stop, call, guard, unexpected

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx",)

APP = "newrelic.app_reporting"
SIGNALS = "newrelic.golden_signals"
DEPLOYMENT = "newrelic.deployment"

NEEDS = ("newrelic.api_key", "newrelic.account_id", "newrelic.app_name")
KEY_ENV = "$NEW_RELIC_API_KEY"
AUTH_HINT = ("Create a User key (NRAK-...) in New Relic (API keys) for a user with access to the account and set "
             "it in newrelic.api_key ($NEW_RELIC_API_KEY).")


def _api(ctx) -> str:
    return ctx.section("newrelic").get("api_url") or "https://api.newrelic.com/graphql"


def _account(ctx) -> int:
    raw = str(ctx.section("newrelic")["account_id"]).strip()
    if not raw.isdigit():
        raise Stop(error(f"newrelic.account_id must be the numeric account id, got {raw!r}", reason=Reason.UNEXPECTED))
    return int(raw)


def _app(ctx) -> str:
    name = str(ctx.section("newrelic")["app_name"])
    if "'" in name or '"' in name or "\\" in name:
        raise Stop(error("newrelic.app_name may not contain quotes or backslashes", reason=Reason.UNEXPECTED))
    return name


def _curl(ctx, graphql: str) -> Command:
    doc = graphql.replace('"', '\\"').replace("'", "'\\''")
    return Command(f"curl -sS {_api(ctx)} -H \"API-Key: {KEY_ENV}\" -H 'Content-Type: application/json' "
                   f"-d '{{\"query\": \"{doc}\"}}'")


def _query(ctx, graphql: str, what: str) -> dict:
    """``data.actor`` of one GraphQL query; GraphQL errors become an error result (could not look)."""
    key = ctx.section("newrelic")["api_key"]
    _, body, _ = call(ctx, "New Relic", "POST", _api(ctx), headers={"API-Key": key}, json_body={"query": graphql},
                      what=what, permission="access to the account", auth_hint=AUTH_HINT)
    if isinstance(body, dict) and body.get("errors"):
        msg = str((body["errors"][0] or {}).get("message", ""))[:200] if isinstance(body["errors"], list) else ""
        denied = re.search(r"(?i)not authorized|access|forbidden|permission", msg)
        raise Stop(error(f"NerdGraph refused {what}: {msg}", evidence={"errors": body["errors"][:3]},
                         reason=Reason.FORBIDDEN if denied else Reason.UNEXPECTED,
                         hint=f"The key's user needs access to account {ctx.section('newrelic')['account_id']}."
                              if denied else "", commands=[_curl(ctx, graphql)]))
    try:
        return body["data"]["actor"]
    except (KeyError, TypeError):
        raise unexpected("New Relic", what, body, "data.actor") from None


def _nrql_results(actor: dict, alias: str, what: str) -> list:
    try:
        results = actor["account"][alias]["results"]
    except (KeyError, TypeError):
        raise unexpected("New Relic", what, actor, f"account.{alias}.results") from None
    if not isinstance(results, list):
        raise unexpected("New Relic", what, results, "a list of results")
    return results


def _number(value):
    """NRQL values: a number, {"score": x} (apdex) or {"95": x} (percentile); None when no data."""
    if isinstance(value, dict):
        value = value.get("score", next(iter(value.values()), None) if len(value) == 1 else None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------------------------- checks
@check(APP, title="APM agent reporting", needs=NEEDS, permissions=("NerdGraph read (user key)",),
       explained_by=("app.stealthz", "kubernetes.deployments", "kubernetes.pods_crashing"), smoke=True)
@guard
def check_app_reporting(ctx):
    """The APM application `newrelic.app_name` exists in account `newrelic.account_id` and its agent sent
    data in the last `newrelic.max_silence_minutes` (10).

    No data is not "no problem": it means the agent is broken (license key, agent crash, app not
    running at all), and every other New Relic figure is blind. Fix: check the agent's log in the app
    pods and NEW_RELIC_LICENSE_KEY. The agent runs inside the app: when the app or its pods are down,
    the silence is their consequence."""
    app, acct = _app(ctx), _account(ctx)
    limit = float(ctx.setting("max_silence_minutes", 10))
    graphql = (f"{{ actor {{ entitySearch(query: \"domain = 'APM' AND type = 'APPLICATION' AND name = '{app}'\") "
               "{ results { entities { guid name accountId reporting alertSeverity "
               "... on ApmApplicationEntityOutline { applicationId language } } } } "
               f"account(id: {acct}) {{ last: nrql(query: \"SELECT latest(timestamp) AS last_seen, count(*) AS n "
               f"FROM Transaction WHERE appName = '{app}' SINCE 1440 minutes ago\") {{ results }} }} }} }}")
    actor = _query(ctx, graphql, f"APM application {app}")
    try:
        entities = [e for e in actor["entitySearch"]["results"]["entities"] if e.get("name") == app]
    except (KeyError, TypeError):
        raise unexpected("New Relic", "entity search", actor, "entitySearch.results.entities") from None
    cmds = [_curl(ctx, graphql)]
    if not entities:
        return error(f"no APM application named {app!r} in account {acct} (check newrelic.app_name and account_id)",
                     evidence={"account_id": acct}, commands=cmds, reason=Reason.UNEXPECTED)
    ent = entities[0]
    rows = _nrql_results(actor, "last", "last data")
    row = rows[0] if rows else {}
    last = _number(row.get("last_seen"))
    silent = (time.time() * 1000 - last) / 60000 if last else None
    ev = {"guid": ent.get("guid"), "application_id": ent.get("applicationId"), "reporting": ent.get("reporting"),
          "transactions_24h": row.get("n"), "minutes_since_last_data": round(silent, 1) if silent is not None else None}
    hint = ("The agent stopped sending: read the agent log in the app pods (newrelic-admin, NEW_RELIC_LICENSE_KEY, "
            "NEW_RELIC_APP_NAME); if the app itself is down, the kubernetes and app layers say so.")
    if silent is None:
        return fail(f"no data from the APM agent of {app} in 24 h: the agent is broken (not the app healthy)",
                    evidence=ev, commands=cmds, hint=hint)
    if silent > limit or ent.get("reporting") is False:
        return fail(f"no data from the APM agent of {app} for {silent:.0f} min: the agent is broken or the app is "
                    "not serving (not the app healthy)", evidence=ev, commands=cmds, hint=hint)
    return ok(f"{app} reporting: last data {silent:.1f} min ago, {row.get('n')} transactions in 24 h", evidence=ev,
              commands=cmds)


def _recent_deploy(ctx, actor: dict, ev: dict) -> str:
    """", after deployment X (N min ago)" for a marker younger than ``deploy_suspect_minutes`` (into the
    evidence too), else ""."""
    rows = _nrql_results(actor, "deploy", "deployment markers") if "deploy" in (actor.get("account") or {}) else []
    stamp = _number(rows[0].get("timestamp")) if rows else None
    if stamp is None:
        return ""
    age = (time.time() * 1000 - stamp) / 60000
    ev["last_deploy"] = {"revision": rows[0].get("revision"), "minutes_ago": round(age)}
    if age > float(ctx.setting("deploy_suspect_minutes", 120)):
        return ""
    return f", after deployment {rows[0].get('revision')} ({age:.0f} min ago)"


def _signals_nrql(app: str, since: int, until: int | None) -> str:
    window = f"SINCE {since} minutes ago" + (f" UNTIL {until} minutes ago" if until else "")
    return ("SELECT count(*) AS throughput, percentage(count(*), WHERE error IS true) AS error_rate, "
            "apdex(duration, t: 0.5) AS apdex, percentile(duration, 95) AS p95 "
            f"FROM Transaction WHERE appName = '{app}' {window}")


@check(SIGNALS, title="Error rate, apdex, throughput and p95 vs a day earlier", needs=NEEDS, depends_on=(APP,),
       permissions=("NerdGraph read (user key)",))
@guard
def check_golden_signals(ctx):
    """The last `newrelic.window_minutes` (30) vs the same window a day earlier, from NRQL on Transaction:
    error rate, apdex (T = 0.5 s), throughput and p95 duration, with the last deployment marker of the day.

    Fails when the error rate is above `newrelic.max_error_rate` (5 %) and at least twice a day earlier,
    or when p95 is `newrelic.p95_fail_ratio` (3) times a day earlier's and over 1 s: degraded, not down,
    and the likely cause of `slow` when nothing deeper fails. Warns when p95 doubled (and is over 1 s),
    apdex fell by 0.1, or throughput halved. A deployment marker younger than `newrelic.deploy_suspect_minutes`
    (120) is named in the summary: a regression right after a release points at it."""
    app, acct = _app(ctx), _account(ctx)
    win = int(ctx.setting("window_minutes", 30))
    graphql = (f"{{ actor {{ account(id: {acct}) {{ "
               f"now: nrql(query: \"{_signals_nrql(app, win, None)}\") {{ results }} "
               f"before: nrql(query: \"{_signals_nrql(app, 1440 + win, 1440)}\") {{ results }} "
               f"deploy: nrql(query: \"SELECT timestamp, revision FROM Deployment WHERE appName = '{app}' "
               f"SINCE 1440 minutes ago LIMIT 1\") {{ results }} }} }} }}")
    actor = _query(ctx, graphql, "golden signals")
    now, before = ({k: _number(v) for k, v in ((_nrql_results(actor, alias, "golden signals") or [{}])[0]).items()}
                   for alias in ("now", "before"))
    ev = {"window_min": win, "now": now, "day_ago": before}
    after = _recent_deploy(ctx, actor, ev)
    cmds = [_curl(ctx, graphql)]
    if not now.get("throughput"):
        return error(f"no transactions of {app} in the last {win} min: nothing to compare (see {APP})", evidence=ev,
                     commands=cmds)
    er, er0 = now.get("error_rate") or 0.0, before.get("error_rate") or 0.0
    max_er = float(ctx.setting("max_error_rate", 5))
    text = (f"error rate {er:.1f}% (day ago {er0:.1f}%), apdex {now.get('apdex')} ({before.get('apdex')}), "
            f"{now['throughput']:.0f} tx ({before.get('throughput') or 0:.0f}), p95 {now.get('p95')} s ({before.get('p95')} s)")
    if er >= max_er and er >= 2 * er0:
        times = f" ({er / er0:.0f}x a day earlier)" if er0 else ""
        return fail(f"error rate up{times}{after}: {text}", evidence=ev, commands=cmds,
                    hint="Errors jumped against a day earlier: read the top errors (sentry layer, New Relic Errors "
                         "inbox)" + (" and roll back or fix the release named" if after else
                                     " and the last deployment marker") + ".")
    findings = []
    p95, p950 = now.get("p95"), before.get("p95")
    p95_fail = float(ctx.setting("p95_fail_ratio", 3))
    if p95 and p950 and p95 >= p95_fail * p950 and p95 >= 1.0:
        return fail(f"p95 {p95 / p950:.1f}x a day earlier's{after}: {text}", evidence=ev, commands=cmds,
                    hint="Degraded, not down: the slowest requests got much slower. Compare the app and postgres "
                         "layers' latency (a slow tail, long queries, locks) and New Relic's transaction traces"
                         + (", and the release named." if after else "."))
    if p95 and p950 and p95 >= 2 * p950 and p95 >= 1.0:
        findings.append("p95 doubled")
    if now.get("apdex") is not None and before.get("apdex") is not None and now["apdex"] <= before["apdex"] - 0.1:
        findings.append("apdex fell")
    if (before.get("throughput") or 0) >= 100 and now["throughput"] < 0.5 * before["throughput"]:
        findings.append("throughput halved")
    if er >= max_er:
        findings.append("error rate high (as a day ago)")
    if findings:
        return warn(f"{', '.join(findings)}: {text}", evidence=ev, commands=cmds,
                    hint="Compare with the deployment marker and the app/postgres layers' latency.")
    return ok(text, evidence=ev, commands=cmds)


@check(DEPLOYMENT, title="Last deployment marker", needs=NEEDS, depends_on=(APP,),
       permissions=("NerdGraph read (user key)",))
@guard
def check_deployment(ctx):
    """The newest deployment marker of the app in the last 30 days (NRQL on Deployment).

    Informational: a change in the golden signals right after a marker names the suspect release. No
    marker means deploys are not recorded (Studio's Cloud Build would record them)."""
    app, acct = _app(ctx), _account(ctx)
    graphql = (f"{{ actor {{ account(id: {acct}) {{ last: nrql(query: \"SELECT timestamp, revision, user, description "
               f"FROM Deployment WHERE appName = '{app}' SINCE 30 days ago LIMIT 1\") {{ results }} }} }} }}")
    rows = _nrql_results(_query(ctx, graphql, "deployment markers"), "last", "deployment markers")
    cmds = [_curl(ctx, graphql)]
    if not rows:
        return ok("no deployment marker in 30 days (deploys are not recorded in New Relic)", commands=cmds)
    row = rows[0]
    stamp = _number(row.get("timestamp"))
    if stamp is None:
        raise unexpected("New Relic", "deployment markers", row, "rows with a timestamp")
    age = (time.time() * 1000 - stamp) / 60000
    ago = f"{age:.0f} min" if age < 120 else (f"{age / 60:.1f} h" if age < 2880 else f"{age / 1440:.1f} d")
    ev = {"revision": row.get("revision"), "user": row.get("user"), "description": row.get("description"),
          "minutes_ago": round(age)}
    return ok(f"last deployment {row.get('revision')} {ago} ago" + (f" by {row['user']}" if row.get("user") else ""),
              evidence=ev, commands=cmds)
