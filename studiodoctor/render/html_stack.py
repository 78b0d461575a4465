"""The stack as a picture: Studio's production architecture as the seed draws it, one box per part.

Users -> CloudFlare (DNS, SSL, cache) -> Traefik -> the frontend pods (nginx -> gunicorn) -> Redis and the
Celery workers in the cluster, GCS and Cloud SQL outside it; Sentry, New Relic and Postmark beside.
Each box takes the worst status of its layers' results and opens (``<details>``, no script) to each
check's summary, evidence, hint, commands and vantage. Between the boxes, the trace's hops (``trace.hops``
evidence) are drawn along the request path with their verdicts, the first bad hop marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from . import format_value, is_rows, rows_table
from .html_style import HOP_WORD, SYMBOL, WORD


@dataclass(frozen=True)
class Box:
    key: str
    title: str
    sub: str
    layers: tuple[str, ...]


BOXES = {b.key: b for b in (
    Box("users", "Users", "browsers and Kolibri devices; the local checks: this machine's own network", ("local",)),
    Box("cloudflare", "CloudFlare", "DNS · SSL · cache · DDoS: what users reach", ("dns", "cloudflare", "edge")),
    Box("ingress", "Traefik", "the ingress on the cluster: routes by hostname, Let's Encrypt", ("traefik",)),
    Box("kubernetes", "Kubernetes (GKE)", "deployments, pods, restarts, events", ("kubernetes",)),
    Box("nginx", "nginx", "frontend pod: proxy, /static/, /content/ to GCS", ("nginx",)),
    Box("app", "gunicorn", "frontend pod: the Django app", ("app",)),
    Box("redis", "Redis", "Celery's broker", ("redis",)),
    Box("celery", "Celery workers", "publishing and other tasks", ("celery",)),
    Box("gcs", "GCS", "bucket studio-content", ("gcs",)),
    Box("postgres", "Cloud SQL", "PostgreSQL: user data", ("postgres",)),
    Box("trace", "Request trace", "one request followed hop by hop", ("trace",)),
    Box("sentry", "Sentry", "errors of the app", ("sentry",)),
    Box("newrelic", "New Relic", "APM: errors, apdex, latency", ("newrelic",)),
    Box("email", "Postmark", "email to users", ("email",)),
)}
# the trace's hops along the request path: (hop, the box it reaches)
HOPS = (("edge", "cloudflare"), ("origin", "ingress"), ("nginx", "nginx"), ("app", "app"))
INGRESS_CHECK = "kubernetes.ingress_controller"   # its evidence names the controllers routing the hostnames
RANK = {"none": -1, "ok": 0, "skip": 1, "warn": 2, "blocked": 3, "error": 4, "fail": 5}


def box_status(results: list[dict]) -> str:
    """The worst status of a box's results; skips count only when everything was skipped."""
    if not results:
        return "none"
    ran = [r["status"] for r in results if r["status"] != "skip"]
    return max(ran, key=RANK.__getitem__) if ran else "skip"


def hop_verdicts(results: dict[str, dict]) -> dict[str, dict]:
    """hop -> {verdict, label, first}: from ``trace.hops``'s rows (all paths of a hop: the worst)."""
    trace = results.get("trace.hops")
    rows = ((trace or {}).get("evidence") or {}).get("rows") or []
    first = ((trace or {}).get("evidence") or {}).get("first_bad_hop")
    bad_at = ((trace or {}).get("evidence") or {}).get("bad_at") or {}
    out = {}
    for hop, _ in HOPS:
        mine = [r for r in rows if isinstance(r, dict) and r.get("hop") == hop]
        verdicts = [r.get("verdict") for r in mine]
        verdict = next((v for v in ("bad", "unknown", "ok", "skipped") if v in verdicts), "none")
        # the row that makes this hop the bad one of its path (the trace's bad_at), else the first of its verdict
        worst = next((r for r in mine if r.get("verdict") == verdict and bad_at.get(r.get("path")) == hop),
                     next((r for r in mine if r.get("verdict") == verdict), {}))
        if verdict in ("bad", "unknown"):
            label = f"{worst.get('path', '')} {worst.get('why', '')}".strip()
        elif verdict == "ok":
            slow = max((r.get("latency_ms") or 0 for r in mine), default=0)
            label = f"{len(mine)} request(s) answer, slowest {slow:.0f} ms"
        elif verdict == "skipped":
            label = worst.get("why", "")
        else:
            label = "no trace in this run"
        out[hop] = {"verdict": verdict, "label": label, "first": hop == first}
    return out


def badge(status: str) -> str:
    return f'<span class="badge b-{escape(status)}">{SYMBOL.get(status, "")} {WORD.get(status, status.upper())}</span>'


def evidence_html(evidence: dict) -> str:
    parts, plain = [], []
    for key, value in evidence.items():
        if is_rows(value):
            columns, cells = rows_table(value, max_cell=80)
            head = "".join(f"<th>{escape(c)}</th>" for c in columns)
            body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in cells)
            parts.append(f'<p class="small">{escape(key)}:</p><table><tr>{head}</tr>{body}</table>')
        elif key == "traceback":
            parts.append(f"<pre>{escape(str(value))}</pre>")
        else:
            plain.append(f"<dt>{escape(key)}</dt><dd>{escape(format_value(value))}</dd>")
    return (f'<dl class="ev">{"".join(plain)}</dl>' if plain else "") + "".join(parts)


def commands_html(commands: list[dict]) -> str:
    out = []
    for c in commands or []:
        note = f'<p class="small"># {escape(c["note"])}</p>' if c.get("note") else ""  # says what the line below does
        out.append(f'{note}<pre class="cmd"><span class="safety">[{escape(c.get("safety", ""))}]</span>'
                   f'<code>{escape(c["text"])}</code><button type="button" class="copy" hidden>copy</button></pre>')
    return "".join(out)


VANTAGE = {"local": "seen from this machine", "cluster": "seen from the cluster (the in-cluster doctor)"}


def check_html(r: dict, changes: list[dict]) -> str:
    seen = VANTAGE.get(r.get("vantage") or "local", f"seen from {r.get('vantage')}")
    extra = [seen, f"{r.get('duration_ms', 0):.0f} ms"]
    samples = r.get("samples")
    if isinstance(samples, dict):
        extra.append("samples: " + ", ".join(f"{k} {format_value(v)}" for k, v in samples.items()))
    head = (f'<summary>{badge(r["status"])} <span class="id">{escape(r["id"])}</span> '
            f'{escape(r.get("summary", ""))}</summary>')
    body = [f'<p class="seen">{escape(r.get("title", ""))} · {escape(" · ".join(extra))}</p>']
    if r.get("blocked_by"):
        body.append(f'<p class="small">blocked by {escape(", ".join(r["blocked_by"]))}</p>')
    if r["status"] not in ("ok", "skip") or r.get("evidence"):
        body.append(evidence_html(r.get("evidence") or {}))
    if r.get("hint"):
        body.append(f'<p class="hint"><b>Fix:</b> {escape(r["hint"])}</p>')
    body.append(commands_html(r.get("commands") or []))
    if changes:
        body.append('<p class="small">since the last good run:</p><ul class="changes">' + "".join(
            f"<li><code>{escape(c['key'])}</code>: {escape(format_value(c['before']))} → "
            f"{escape(format_value(c['now']))}</li>" for c in changes) + "</ul>")
    is_open = " open" if r["status"] in ("fail", "error", "warn") or changes else ""  # blocked: its blocker says it
    return (f'<details class="check st-{escape(r["status"])}" data-check="{escape(r["id"])}" '
            f'data-status="{escape(r["status"])}"{is_open}>{head}{"".join(body)}</details>')


class Picture:
    """The boxes and hops of one report (redacted data), rendered piece by piece by the page."""

    def __init__(self, data: dict):
        self.results = {r["id"]: r for r in data["results"]}
        self.by_layer: dict[str, list[dict]] = {}
        for r in data["results"]:
            self.by_layer.setdefault(r["layer"], []).append(r)
        causes = data.get("likely_causes") or ([data["likely_cause"]] if data.get("likely_cause") else [])
        self.cause_layers = {c.get("layer") for c in causes if isinstance(c, dict)}
        self.changes: dict[str, list[dict]] = {}
        for c in (data.get("since_good") or {}).get("changes", []):
            self.changes.setdefault(c["check"], []).append(c)
        self.hops = hop_verdicts(self.results)
        known = {lay for b in BOXES.values() for lay in b.layers}
        self.others = [lay for lay in self.by_layer if lay not in known]

    def ingress_title(self) -> str:
        """The seed says Traefik; when the cluster says another controller routes the hostnames
        (``kubernetes.ingress_controller``), the box is named after what was found."""
        found = ((self.results.get(INGRESS_CHECK) or {}).get("evidence") or {}).get("controllers") or []
        names = [str(c) for c in found if isinstance(c, str)]
        if not names or names == ["Traefik"]:
            return "Traefik"
        return f"Ingress: {', '.join(names)}"

    def box(self, key: str, title: str = "", sub: str = "", layers: tuple[str, ...] = ()) -> str:
        spec = BOXES.get(key) or Box(key, title, sub, layers)
        if key == "ingress":
            spec = Box(key, self.ingress_title(), spec.sub, spec.layers)
        results = [r for lay in spec.layers for r in self.by_layer.get(lay, [])]
        status = box_status(results)
        counts: dict[str, int] = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: -RANK[x[0]])) or "no checks ran"
        cause = any(lay in self.cause_layers for lay in spec.layers)
        tag = '<span class="cause-tag">◆ likely cause</span>' if cause else ""
        order = sorted(results, key=lambda r: -RANK[r["status"]])
        inner = "".join(check_html(r, self.changes.get(r["id"], [])) for r in order) or \
            '<p class="small">No check of this part ran in this run.</p>'
        is_open = ""  # the picture first: a box opens on demand (the likely cause is spelled out on top)
        return (f'<details class="box st-{status}" id="box-{escape(key)}" data-box="{escape(key)}" '
                f'data-status="{status}" data-layers="{escape(" ".join(spec.layers))}"{is_open}>'
                f'<summary><span class="name">{escape(spec.title)}</span>{badge(status)}{tag}'
                f'<span class="sub">{escape(spec.sub)} — {escape(tally)}; layers: '
                f'{escape(", ".join(spec.layers))}</span></summary><div class="inner">{inner}</div></details>')

    def hop(self, hop: str, horizontal: bool = False) -> str:
        h = self.hops[hop]
        symbol, word = HOP_WORD[h["verdict"]]
        color = {"ok": "var(--ok)", "bad": "var(--fail)", "unknown": "var(--error)"}.get(h["verdict"], "var(--none)")
        dash = ' stroke-dasharray="5 4"' if h["verdict"] != "ok" else ""
        if horizontal:
            svg = (f'<svg width="34" height="24" viewBox="0 0 34 24" aria-hidden="true"><line x1="2" y1="12" x2="26" '
                   f'y2="12" stroke="{color}" stroke-width="3"{dash}/><path d="M24 5 L33 12 L24 19 Z" fill="{color}"/>'
                   f'</svg>')
        else:
            svg = (f'<svg width="24" height="40" viewBox="0 0 24 40" aria-hidden="true"><line x1="12" y1="2" x2="12" '
                   f'y2="30" stroke="{color}" stroke-width="3"{dash}/><path d="M5 28 L12 39 L19 28 Z" fill="{color}"/>'
                   f'</svg>')
        first = '<span class="first-tag">✖ first bad hop</span>' if h["first"] else ""
        cls = f"hop v-{h['verdict']}" + (" first" if h["first"] else "")
        return (f'<div class="{cls}" data-hop="{hop}" data-verdict="{h["verdict"]}" '
                f'data-first-bad="{"true" if h["first"] else "false"}">{svg}<span class="label">{first}'
                f'{symbol} {escape(hop)} hop {word}: {escape(h["label"])}</span></div>')

    def fan(self) -> str:
        """Arrows from the pods to the backends (no hop of the trace goes there)."""
        return ('<svg class="fan" width="100%" height="26" viewBox="0 0 400 26" preserveAspectRatio="none" '
                'aria-hidden="true"><path d="M200 0 L200 10 M60 10 L340 10 M60 10 L60 24 M340 10 L340 24" '
                'stroke="#9ca3af" stroke-width="2" fill="none" vector-effect="non-scaling-stroke"/></svg>')

    def render(self) -> str:
        other = ""
        if self.others:
            other = self.box("other", "Other layers", "layers of plugins", tuple(self.others))
        return (
            '<div class="stack"><div class="path" aria-label="Studio\'s request path">'
            f'<div class="row">{self.box("users")}</div>{self.hop("edge")}'
            f'<div class="row">{self.box("cloudflare")}</div>{self.hop("origin")}'
            '<section class="frame" aria-label="the Kubernetes cluster"><p class="label">Kubernetes cluster</p>'
            f'<div class="row">{self.box("ingress")}</div>{self.hop("nginx")}'
            '<div class="frame"><p class="label">frontend pods</p>'
            f'<div class="pod">{self.box("nginx")}{self.hop("app", horizontal=True)}{self.box("app")}</div></div>'
            f'{self.fan()}<div class="row">{self.box("redis")}{self.box("celery")}</div>'
            f'<div class="row">{self.box("kubernetes")}</div></section>'
            '<section class="frame cloud" aria-label="Google Cloud services"><p class="label">Google Cloud</p>'
            f'<div class="row">{self.box("gcs")}{self.box("postgres")}</div></section>'
            f'<div class="row">{self.box("trace")}{other}</div></div>'
            '<aside class="beside" aria-label="services beside the stack"><h2>Beside the stack</h2>'
            f'{self.box("sentry")}{self.box("newrelic")}{self.box("email")}</aside></div>')
