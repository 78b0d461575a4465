"""kubernetes.ingress_controller and kubernetes.ingress_pods: which ingress controller routes the
hostnames, and its pods.

Studio's chart moved from Traefik (kube-system, Let's Encrypt DNS-01) to ingress-nginx in 2020; which
one routes a deployment is detected from the cluster, never assumed: the Ingress objects whose rules
name the hostnames, their class (``ingressClassName``, the ``kubernetes.io/ingress.class`` annotation or
the default IngressClass), resolved through IngressClass ``spec.controller``. The controller's pods are
found by what they run (image, arguments, the standard ``app.kubernetes.io/name`` label), in
``kubernetes.ingress_namespace`` when set, else cluster-wide (asked by that label first: one page
however big the cluster, then every pod only if no pod carries it), else in the usual namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from checks.kubernetes.common import API, INGRESS_CONTROLLER, INGRESS_PODS, SDK_IMPORTS, check  # noqa: F401
from studiodoctor.backends.kube_pods import ago_text, analyse_pods
from studiodoctor.backends.kubernetes import (ALL_NAMESPACES, Listing, hostnames, kube_setting, kubectl, list_objects,
                                              listing_problem, namespace)
from studiodoctor.model import READ_ONLY, Command, Reason, error, fail, ok, skip, warn

TRAEFIK, NGINX, GCE = "Traefik", "ingress-nginx", "GCE"

# name -> what identifies it: IngressClass controller ids, image fragments, app.kubernetes.io/name values
CONTROLLERS = {
    TRAEFIK: {"ids": ("traefik.io/ingress-controller",), "images": ("traefik",), "names": ("traefik",)},
    NGINX: {"ids": ("k8s.io/ingress-nginx",), "images": ("ingress-nginx/controller", "nginx-ingress-controller"),
            "names": ("ingress-nginx",)},
    GCE: {"ids": ("k8s.io/ingress-gce",), "images": (), "names": ()},   # a managed load balancer: no pods
}
# where controllers usually run, when the cluster-wide pod list is not allowed
USUAL_NAMESPACES = ("ingress-nginx", "kube-system", "traefik", "ingress")


def controller_name(controller: str, class_name: str = "") -> str:
    """A readable controller name from an IngressClass controller id (or, unresolved, the class name)."""
    for name, sig in CONTROLLERS.items():
        if controller in sig["ids"]:
            return name
    text = f"{controller} {class_name}".lower()
    if "traefik" in text:
        return TRAEFIK
    if "nginx" in text:
        return NGINX
    if "gce" in text or "gke" in text:
        return GCE
    return controller or class_name or "unknown"


def host_matches(rule_host: str, host: str) -> bool:
    rule_host, host = rule_host.lower(), host.lower()
    if rule_host.startswith("*."):
        return host.endswith(rule_host[1:]) and host.count(".") == rule_host.count(".")
    return rule_host == host


@dataclass
class Detection:
    """Which controller routes which hostname. ``problem``: the Result when the cluster could not be read."""

    hosts: list[str]
    routes: dict[str, list] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: object = None
    unconfigured: bool = False

    def controllers_for(self, host: str) -> set[str]:
        return {e["controller"] for e in self.routes.get(host, [])}

    @property
    def controllers(self) -> list[str]:
        return sorted({e["controller"] for v in self.routes.values() for e in v})


def _classes(ctx) -> tuple[dict[str, str], str | None, str]:
    listing = list_objects(ctx, "ingressclasses")
    if not listing.ok:
        return {}, None, f"ingress classes not readable ({listing.status}); controller inferred from class names"
    classes, default = {}, None
    for c in listing.items:
        meta = c.get("metadata") or {}
        classes[meta.get("name", "")] = str((c.get("spec") or {}).get("controller") or "")
        if (meta.get("annotations") or {}).get("ingressclass.kubernetes.io/is-default-class") == "true":
            default = meta.get("name")
    return classes, default, ""


def detect(ctx) -> Detection:
    """The routes of the hostnames, from the Ingresses of ``kubernetes.namespace`` (and
    ``kubernetes.ingress_namespaces``), then cluster-wide for hostnames still unrouted. Cached per run."""

    def build() -> Detection:
        ns = namespace(ctx)
        det = Detection(hosts=hostnames(ctx))
        det.namespaces = list(dict.fromkeys([ns] + list(kube_setting(ctx, "ingress_namespaces", []) or [])))
        ingresses = []
        for space in det.namespaces:
            listing = list_objects(ctx, "ingresses", space)
            if not listing.ok:
                det.unconfigured = listing.status == "unconfigured"
                det.problem = listing_problem(ctx, listing)
                return det
            ingresses += listing.items
        det.classes, default, note = _classes(ctx)
        if note:
            det.notes.append(note)
        _route(det, ingresses, default, ns)
        if det.hosts and any(h not in det.routes for h in det.hosts):
            wide = list_objects(ctx, "ingresses", ALL_NAMESPACES)
            if wide.ok:
                det.namespaces.append("(all namespaces)")
                seen = {(i.get("metadata") or {}).get("uid") for i in ingresses}
                _route(det, [i for i in wide.items if (i.get("metadata") or {}).get("uid") not in seen], default, ns)
            else:
                det.notes.append(f"Ingresses of other namespaces not readable ({wide.status})")
        return det

    return ctx.shared.get("kubernetes:ingress-detection", build)


def _route(det: Detection, ingresses: list, default_class, ns: str) -> None:
    for ing in ingresses:
        meta, spec = ing.get("metadata") or {}, ing.get("spec") or {}
        cls = (spec.get("ingressClassName") or (meta.get("annotations") or {}).get("kubernetes.io/ingress.class")
               or default_class or "")
        controller = det.classes.get(cls, "")
        entry = {"ingress": f"{meta.get('namespace', ns)}/{meta.get('name')}", "class": cls or "(none)",
                 "controller": controller_name(controller, cls), "controller_id": controller,
                 "tls": bool(spec.get("tls"))}
        lb = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if lb:
            entry["address"] = lb[0].get("ip") or lb[0].get("hostname")
        for rule in spec.get("rules") or []:
            rh = rule.get("host") or ""
            targets = [h for h in det.hosts if rh and host_matches(rh, h)] if det.hosts else [rh or "*"]
            for h in targets:
                if entry not in det.routes.get(h, []):
                    det.routes.setdefault(h, []).append(entry)


def not_routed_by(ctx, name: str, hosts: list[str]):
    """A `skip` when the cluster says other controllers route every one of ``hosts``; None otherwise
    (no cluster configured, not readable, not answering within a few seconds, or ``name`` routes at
    least one host). The lookup never holds the calling check past a third of its time (at most 3 s):
    a slow Kubernetes API must not cost another layer its verdict."""
    import threading

    box: list = []
    worker = threading.Thread(target=lambda: box.append(detect(ctx)), daemon=True, name="ingress-detection")
    worker.start()
    worker.join(min(3.0, ctx.remaining() / 3))
    if not box:
        return None
    det = box[0]
    if det.problem is not None or not hosts or any(not det.controllers_for(h) for h in hosts):
        return None
    if any(name in det.controllers_for(h) for h in hosts):
        return None
    others = sorted({c for h in hosts for c in det.controllers_for(h)})
    return skip(f"not applicable: {', '.join(others)} routes {', '.join(hosts)}", reason=Reason.NOT_APPLICABLE,
                evidence={"routes": {h: det.routes[h] for h in hosts}},
                hint="The cluster's Ingresses for these hostnames belong to another controller "
                     "(see kubernetes.ingress_controller).")


# -- the controller's pods ------------------------------------------------------------------------------

def runs_controller(p: dict, name: str) -> bool:
    """Whether a pod runs controller ``name``: by image, by the standard name label, by its arguments."""
    sig = CONTROLLERS.get(name)
    if not sig:
        return False
    labels = (p.get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/name") in sig["names"] or labels.get("app") in sig["names"]:
        return True
    for c in (p.get("spec") or {}).get("containers") or []:
        image = str(c.get("image") or "").lower().rsplit("@", 1)[0]
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        if any(repo.endswith(fragment) or f"/{fragment}" in repo or repo == fragment for fragment in sig["images"]):
            return True
        args = " ".join(str(a) for a in (c.get("args") or []) + (c.get("command") or []))
        if any(i in args for i in sig["ids"]):
            return True
    return False


def controller_selector() -> str:
    """The label selector of every known controller's pods (their charts set ``app.kubernetes.io/name``):
    one set-based requirement, so that one cluster-wide list, shared by every controller, finds them."""
    names = sorted({n for sig in CONTROLLERS.values() for n in sig["names"]})
    return f"app.kubernetes.io/name in ({','.join(names)})"


def controller_pods(ctx, name: str) -> tuple[list[dict], list[str], list]:
    """(pods running controller ``name``, namespaces looked at, Results of lists that failed).

    ``kubernetes.ingress_namespace`` (for Traefik also ``kubernetes.traefik_namespace``) when set: its
    pods. Else cluster-wide, asked by the controllers' standard label first (``controller_selector``:
    a page or so whatever the cluster's size), and only when no pod carries it, every pod (a
    controller installed without its chart's labels is still found by image and arguments); when the
    cluster-wide list is forbidden, the usual namespaces one by one."""
    configured = kube_setting(ctx, "ingress_namespace", "")
    if name == TRAEFIK and not configured:
        configured = kube_setting(ctx, "traefik_namespace", "")
    selector = None if configured else controller_selector()
    spaces = [configured] if configured else [ALL_NAMESPACES]
    found, looked, problems = [], [], []
    while spaces:
        space = spaces.pop(0)
        listing: Listing = list_objects(ctx, "pods", space, label_selector=selector)
        if not listing.ok:
            problems.append(listing_problem(ctx, listing))
            if space == ALL_NAMESPACES and listing.status in ("forbidden", "notfound"):
                spaces += [s for s in USUAL_NAMESPACES if s not in spaces]
                selector = None
            elif listing.status not in ("forbidden", "notfound"):
                break  # unreachable, unauthorized: no point asking again
            continue
        where = "all namespaces" if space == ALL_NAMESPACES else space
        mine = [p for p in listing.items if runs_controller(p, name)]
        if selector and not mine:  # nobody carries the label: look at what every pod runs
            looked.append(f"{where} (labelled {selector})")
            selector = None
            spaces.insert(0, space)
            continue
        looked.append(f"{where} ({'labelled ' + selector if selector else 'every pod'})" if space == ALL_NAMESPACES
                      else where)
        found += mine
    return found, looked, problems


def pods_not_found(name: str, looked: list[str], problems: list):
    """The Result when no pod runs controller ``name``: an error when some list failed (we could not
    look everywhere), else None (the caller says what "not found" means for it)."""
    if not problems:
        return None
    forbidden = any(p.reason == Reason.FORBIDDEN.value for p in problems)
    where = f" (looked in {', '.join(looked)})" if looked else ""
    return error(f"cannot tell where {name} runs{where}: " + "; ".join(p.summary for p in problems[-2:]),
                 reason=Reason.FORBIDDEN if forbidden else Reason.UNEXPECTED,
                 evidence={"looked": looked, "problems": [p.summary for p in problems]},
                 hint="Set kubernetes.ingress_namespace to the controller's namespace, or grant list pods there "
                      "(or cluster-wide).", commands=[c for p in problems for c in p.commands][:3])


@check(INGRESS_CONTROLLER, title="Which ingress controller routes the hostnames", depends_on=(API,),
       permissions=("list ingresses.networking.k8s.io", "list ingressclasses.networking.k8s.io",
                    "list ingresses.networking.k8s.io in all namespaces"))
def check_ingress_controller(ctx):
    """Finds the Ingress objects that route each hostname and the controller behind their class.

    Studio's chart moved from Traefik (kube-system, Let's Encrypt DNS-01) to ingress-nginx in 2020;
    which one serves production today is detected, not assumed: ingressClassName or the
    ``kubernetes.io/ingress.class`` annotation, resolved through IngressClass ``spec.controller``
    (traefik.io/ingress-controller, k8s.io/ingress-nginx, k8s.io/ingress-gce). Ingresses of
    ``kubernetes.namespace`` (and ``kubernetes.ingress_namespaces``) first, then of every namespace for
    hostnames still unrouted. The traefik checks only run when Traefik is the answer."""
    det = detect(ctx)
    if det.problem is not None:
        return det.problem
    ev = {"namespaces": det.namespaces, "routes": det.routes, "ingress_classes": det.classes,
          "controllers": det.controllers}
    if det.notes:
        ev["note"] = "; ".join(det.notes)
    cmds = [Command(kubectl(ctx, "get ingress -A -o wide", None), READ_ONLY),
            Command(kubectl(ctx, "get ingressclass", None), READ_ONLY)]
    missing = [h for h in det.hosts if h not in det.routes]
    found = "; ".join(f"{h} -> {', '.join(sorted({e['controller'] for e in v}))} "
                      f"({', '.join(e['ingress'] for e in v)})" for h, v in det.routes.items())
    where = ", ".join(det.namespaces)
    if missing:
        return warn(f"no Ingress in {where} routes {', '.join(missing)}" + (f"; {found}" if found else ""),
                    evidence=ev, commands=cmds,
                    hint="The hostname may be routed by a Traefik IngressRoute, a Gateway API route, or an Ingress "
                         "we may not read (kubernetes.ingress_namespaces).")
    if not det.routes:
        return warn(f"no Ingress in {where}", evidence=ev, commands=cmds)
    multi = [h for h, v in det.routes.items() if len({e["controller"] for e in v}) > 1]
    if multi:
        return warn(f"hostnames claimed by more than one controller: {found}", evidence=ev, commands=cmds,
                    hint="Two controllers answering for one host give flapping routes and certificates.")
    return ok(found[:400], evidence=ev, commands=cmds)


@check(INGRESS_PODS, title="The ingress controller's pods are Ready and not restarting",
       depends_on=(INGRESS_CONTROLLER,), permissions=("list pods in all namespaces",))
def check_ingress_pods(ctx):
    """The pods of the controller that routes the hostnames (as kubernetes.ingress_controller found it):
    Ready, not crash-looping, not OOMKilled within ``kubernetes.restart_window_minutes`` (60).

    While the controller is down or killed every hostname answers 502/521 at the edge. Its pods are
    found by what they run (image, arguments, ``app.kubernetes.io/name``) in
    ``kubernetes.ingress_namespace`` when set, else in every namespace, asked by the controllers'
    ``app.kubernetes.io/name`` label first (the whole pod list only when no pod carries it). A managed
    load balancer (GCE)
    has no pods here: skipped. No pod found is an error naming what to set, never ok."""
    det = detect(ctx)
    if det.problem is not None:
        return det.problem
    if not det.controllers:
        return error(f"cannot tell which controller routes {', '.join(det.hosts) or 'the hostnames'}: no Ingress "
                     "names them (see kubernetes.ingress_controller)", reason=Reason.NOT_CONFIGURED)
    window = float(kube_setting(ctx, "restart_window_minutes", 60)) * 60
    rows, problems, warns, skipped = {}, [], [], []
    cmds = []
    for name in det.controllers:
        if name == GCE:
            skipped.append(f"{name} is a managed load balancer (no controller pods in the cluster)")
            continue
        if name not in CONTROLLERS:
            problems.append(("error", f"controller {name!r} is not one studiodoctor knows how to find"))
            continue
        pods, looked, failed = controller_pods(ctx, name)
        if not pods:
            blocked = pods_not_found(name, looked, failed)
            problems.append(("error", blocked.summary if blocked else
                             f"no pod runs {name} in {', '.join(looked)}: set kubernetes.ingress_namespace"))
            continue
        a = analyse_pods(pods, datetime.now(timezone.utc), restart_window=window)
        spaces = sorted({(p.get("metadata") or {}).get("namespace", "") for p in pods})
        ready = sum(v["ready"] for v in a["workloads"].values())
        rows[name] = {"namespaces": spaces, "pods": a["total"], "ready": ready, "looked": looked,
                      "workloads": {w: f"{v['ready']}/{v['pods']} ready" for w, v in a["workloads"].items()},
                      "crashing": a["crashing"][:5], "oomkilled": a["oomkilled"][:5], "restarts": a["restarts"][:5]}
        first = pods[0].get("metadata") or {}
        cmds += [Command(kubectl(ctx, "get pods -o wide", first.get("namespace")), READ_ONLY),
                 Command(kubectl(ctx, f"logs {first.get('name')} --previous --tail=100", first.get("namespace")),
                         READ_ONLY, "the last killed instance")]
        recent = [o for o in a["oomkilled"] if o["age_s"] is not None and o["age_s"] <= window]
        if not ready:
            problems.append(("fail", f"no {name} pod Ready in {', '.join(spaces)}"))
        if a["crashing"]:
            problems.append(("fail", f"{name}: " + "; ".join(f"{c['pod']} {c['reason']}" for c in a["crashing"][:3])))
        if recent:
            problems.append(("fail", f"{name}: " + "; ".join(f"{o['pod']} OOMKilled {ago_text(o['age_s'])} "
                                                              f"(limit {o['memory_limit']})" for o in recent[:3])))
        if a["restarts"] and not recent:
            warns.append(f"{name}: " + "; ".join(f"{r['pod']} restarted {ago_text(r['age_s'])} ({r['last_reason']})"
                                                 for r in a["restarts"][:3]))
        if a["not_ready"] and ready:
            warns.append(f"{len(a['not_ready'])} {name} pod(s) not Ready")
    ev = {"controllers": rows, "routes": det.routes}
    if skipped:
        ev["skipped"] = skipped
    fails = [t for kind, t in problems if kind == "fail"]
    errors = [t for kind, t in problems if kind == "error"]
    if fails:
        return fail("; ".join(fails)[:600], evidence=ev, commands=cmds,
                    hint="While the ingress controller is down or killed every hostname answers 502 at the edge.")
    if errors:
        return error("; ".join(errors)[:600], evidence=ev, commands=cmds, reason=Reason.NOT_CONFIGURED)
    if warns:
        return warn("; ".join(warns)[:600], evidence=ev, commands=cmds)
    if not rows:
        return skip("; ".join(skipped), reason=Reason.NOT_APPLICABLE, evidence=ev)
    return ok("; ".join(f"{n}: {r['ready']}/{r['pods']} pod(s) Ready in {', '.join(r['namespaces'])}"
                        for n, r in rows.items()), evidence=ev, commands=cmds)
