"""``studiodoctor lab up | status | down``: Studio's stack on loopback, in the background.

The request path of production, every hop a real server where one runs here:
edge (nginx + CloudFlare header shim, lab certificates) -> Traefik (file provider, lab certificates)
-> Studio's internal nginx -> the Studio stand-in app under gunicorn -> PostgreSQL; Redis with a real
Celery worker; fake-gcs-server behind an anonymous-access gate; a DNS server, and the CloudFlare and
Kubernetes API stand-ins (the frontend pods are Ready only while the real app's /healthz answers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from . import variants
from .launcher import Launcher
from .state import lab_dir, laptop_profile_path, profile_path

STATE_FILE = "state.json"


def launcher_kinds(variant: "variants.Variant | None" = None) -> dict[str, type[Launcher]]:
    from .servers.celery_worker import CeleryWorker
    from .servers.doctor import InClusterDoctor
    from .standins.cloudflare_api import CloudflareAPI
    from .standins.dns_server import DnsServer
    from .standins.edge_proxy import EdgeProxy
    from .servers.fake_gcs import FakeGCSServer
    from .servers.gcs_gate import GCSGate
    from .servers.ingress_nginx import IngressNginx
    from .standins.kubernetes import KubeAPIServer
    from .servers.postgres_server import PostgresServer
    from .servers.redis_server import RedisServer
    from .standins.newrelic_api import NewRelicAPI
    from .standins.postmark_api import PostmarkAPI
    from .standins.sentry_api import SentryAPI
    from .servers.smtp_relay import SMTPRelay
    from .servers.studio_app import StudioApp
    from .servers.studio_nginx import StudioNginx
    from .servers.traefik_server import TraefikServer
    from .latency import Latency

    return {"redis": RedisServer, "postgres": PostgresServer, "fake-gcs": FakeGCSServer, "gcs-gate": GCSGate,
            "celery": CeleryWorker, "studio-app": StudioApp, "studio-nginx": StudioNginx,
            "traefik": TraefikServer, "ingress-nginx": IngressNginx, "edge": EdgeProxy, "dns": DnsServer,
            "cloudflare_api": CloudflareAPI, "kube-api": KubeAPIServer, "sentry-api": SentryAPI,
            "newrelic-api": NewRelicAPI, "postmark-api": PostmarkAPI, "smtp-relay": SMTPRelay, "latency": Latency,
            "doctor": InClusterDoctor, **(studio_kinds() if variant is not None and variant.runs_studio else {})}


def studio_kinds() -> dict[str, type[Launcher]]:
    """The studio variant's own processes in place of the stand-in app, its worker and nginx model."""
    from .servers.studio_django import StudioCelery, StudioGunicorn
    from .servers.studio_own_nginx import StudioOwnNginx

    return {"celery": StudioCelery, "studio-app": StudioGunicorn, "studio-nginx": StudioOwnNginx}


# The frontend Deployment's pods in the lab: each runs its own real gunicorn and nginx (kinds studio-app,
# studio-app-1, ... and studio-nginx, studio-nginx-1, ...), which the Kubernetes stand-in's pod network leads to.
FRONTEND_PODS = 3
PER_POD = ("studio-app", "studio-nginx")


def pod_kinds(kind: str) -> list[str]:
    """The kinds of one per-pod server, pod 0 first: ``studio-app``, ``studio-app-1``, ..."""
    return [kind] + [f"{kind}-{i}" for i in range(1, FRONTEND_PODS)]


# kinds in start order (each may need the ones before it); "traefik" is the variant's ingress kind
ORDER = ("redis", "postgres", "fake-gcs", "gcs-gate", "celery", "studio-app", "studio-nginx", "traefik", "edge",
         "dns", "cloudflare_api", "kube-api", "sentry-api", "newrelic-api", "postmark-api",
         "smtp-relay", "latency", "doctor")   # the in-cluster doctor last: its profile (`lab`) names every other server


class Lab:
    """The lab's launchers by kind, loaded from (and saved to) the lab directory's state file.
    ``variant``: a name from :mod:`studiodoctor.lab.variants` (fixed when the lab is first built)."""

    def __init__(self, root: Path | None = None, variant: str | None = None, studio_src: str | None = None):
        self.root = Path(root or lab_dir())
        self.services: dict[str, Launcher] = {}
        self.extra: dict = {"variant": variants.get(variant).name}
        if studio_src:
            self.extra["studio_src"] = str(studio_src)

    @property
    def variant(self) -> "variants.Variant":
        return variants.get(self.extra.get("variant"))

    @property
    def order(self) -> tuple[str, ...]:
        kinds = (self.variant.ingress if k == "traefik" else k for k in ORDER)
        return tuple(each for k in kinds for each in (pod_kinds(k) if k in PER_POD else [k]))

    def pods(self, kind: str) -> list[Launcher]:
        """Every frontend pod's server of ``kind`` (``studio-app`` or ``studio-nginx``), pod 0 first."""
        return [self.services[k] for k in pod_kinds(kind) if k in self.services]

    @property
    def ingress(self) -> Launcher:
        """The ingress server (Traefik or ingress-nginx: same fault interface)."""
        return self.services[self.variant.ingress]

    # state -------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @classmethod
    def load(cls, root: Path | None = None) -> "Lab":
        lab = cls(root)
        try:
            state = json.loads(lab.state_file.read_text())
        except (OSError, ValueError):
            return lab
        kinds = launcher_kinds(variants.get(state.get("extra", {}).get("variant")))
        for item in state.get("services", []):
            kind = str(item.get("kind"))
            cls_ = kinds.get(kind) or kinds.get(kind.rsplit("-", 1)[0])  # studio-app-1: a StudioApp
            if cls_ is not None:
                lab.services[item["kind"]] = cls_.from_state(item)
        lab.extra = {"variant": "default", **state.get("extra", {})}
        return lab

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = {"services": [self.services[k].to_state() for k in self.order if k in self.services],
                 "extra": self.extra}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)
        full = self.profile()
        profile_path().write_text(json.dumps(full, indent=2))
        from .laptop import laptop_profile

        laptop_profile_path().write_text(json.dumps(laptop_profile(full, self.root / "kubeconfig"), indent=2))

    def __getitem__(self, kind: str) -> Launcher:
        return self.services[kind]

    @property
    def exists(self) -> bool:
        return bool(self.services)

    # profile -----------------------------------------------------------------------------------
    def profile(self) -> dict:
        """The ``lab`` profile; with ``lab up --rtt``, every endpoint in it is the delayed relay's."""
        data = self.direct_profile()
        delay = self.services.get("latency")
        if delay is not None:
            from .latency import route

            data = route(data, delay.delayed)
        return data

    def direct_profile(self) -> dict:
        """The profile pointing at the servers themselves (no added latency)."""
        from ..config import deep_merge
        from . import edge_lab

        v = self.variant
        data: dict = {"timeout": 10.0, "dns": {"hostnames": [v.hostname]}}
        for kind in self.order:
            svc = self.services.get(kind)
            # the profile's app.url and nginx.url reach pod 0, like a port-forward to one pod
            if svc is not None and kind not in ("edge", "dns", "cloudflare_api") and kind not in self._replicas():
                data = deep_merge(data, svc.profile())
        samples = self.extra.get("samples", {}) if v.profile_overrides else {}
        if all(k in self.services for k in ("edge", "dns", "cloudflare_api")):
            data = deep_merge(data, edge_lab.profile(self["dns"], self["cloudflare_api"], self["edge"],
                                                     static_path=samples.get("static", ""),
                                                     storage_path=samples.get("storage", ""),
                                                     databases_sample=samples.get("databases", "")))
        if v.profile_overrides:  # the default lab names its samples and deployments; others leave them to discovery
            nginx = data.setdefault("nginx", {})
            for key, sample in (("storage_path", "storage"), ("database_path", "databases")):
                if samples.get(sample):
                    nginx[key] = samples[sample]
            data.setdefault("gcs", {})["storage_max_objects"] = 1000
            data.setdefault("kubernetes", {}).update(app_deployment="master-studio",
                                                     workers_deployment="master-studio-workers",
                                                     cloudsql_deployment="master-cloudsql-proxy")
        return data

    @staticmethod
    def _replicas() -> set[str]:
        return {k for kind in PER_POD for k in pod_kinds(kind)[1:]}

    # lifecycle ---------------------------------------------------------------------------------
    def build(self, kind: str) -> Launcher:
        """A new launcher of ``kind`` wired to the services already built, shaped by the lab's variant."""
        from .certs import LabCA

        kinds = launcher_kinds(self.variant)
        root, v, s = self.root, self.variant, self.services
        hostnames = [v.hostname]
        if kind in ("traefik", "ingress-nginx", "edge", "postgres", "studio-nginx", "postmark-api") and "ca" not in self.__dict__:
            self.ca = LabCA(root)
        if v.runs_studio and (kind in ("postgres", "celery", "postmark-api") or kind.startswith(PER_POD)):
            from . import studio_lab

            return studio_lab.build(self, kind, kinds[kind.rsplit("-", 1)[0] if kind[-1].isdigit() else kind])
        if kind == "redis":
            return kinds[kind](root, disable_commands=v.redis_disabled_commands)
        if kind == "postgres":
            tls = {}
            if v.postgres_tls:
                cert, key = self.ca.issue("127.0.0.1", label="postgres")
                tls = {"cert": str(cert), "key": str(key), "ca": str(self.ca.ca_file)}
            return kinds[kind](root, tls=tls)
        if kind == "fake-gcs":
            return kinds[kind](root, bucket=v.bucket)
        if kind == "gcs-gate":
            return kinds[kind](root, upstream=s["fake-gcs"].url)
        if kind == "celery":   # Studio's Makefile runs --concurrency=3: so do the workers Deployment's pods here
            return kinds[kind](root, broker_url=s["redis"].url(0), concurrency=3)
        if kind.startswith("studio-app"):  # pod 0 as production runs it (2 workers); the others lighter
            return kinds["studio-app"](root, dsn=s["postgres"].dsn(), api_token="lab-admin-token", threads=8,
                                       workers=2 if kind == "studio-app" else 1, variant=v.name, name=kind)
        if kind.startswith("studio-nginx"):
            # through the gate, as production's nginx reaches GCS: the bucket's access rules (a listing made
            # public, an object made private) show at /content/ as they would (listing_guard off: the gate refuses)
            app = s[kind.replace("studio-nginx", "studio-app")]
            return kinds["studio-nginx"](root, app_port=app.port, gcs_url=s["gcs-gate"].url,
                                         bucket=s["fake-gcs"].bucket, variant=v.name, name=kind, listing_guard=False)
        backends = [svc.url for svc in self.pods("studio-nginx")]  # the Service's endpoints, balanced
        if kind == "traefik":
            return kinds[kind](root, hostnames=hostnames, backend=backends, ca=self.ca, health_path="/stealthz")
        if kind == "ingress-nginx":
            return kinds[kind](root, hostnames=hostnames, backend=backends, ca=self.ca)
        if kind == "edge":
            return kinds[kind](root, hostnames=hostnames, origin_url=self.ingress.entrypoint, ca=self.ca)
        if kind == "dns":
            from .edge_lab import records_for

            return kinds[kind](root, zone=v.zone, records=records_for(hostnames, v.zone))
        if kind == "cloudflare_api":
            return kinds[kind](root, zone=v.zone, hostnames=hostnames,
                               cache_rules={"storage": v.storage_rule, "databases": v.databases_rule})
        if kind == "kube-api":
            return kinds[kind](root, namespace=v.namespace, hostnames=hostnames, variant=v.name,
                               frontend=FRONTEND_PODS)
        if kind == "latency":
            from .latency import endpoints

            return kinds[kind](root, rtt_ms=self.extra.get("rtt_ms", 0), jitter_ms=self.extra.get("jitter_ms", 0),
                               upstreams=endpoints(self.direct_profile()))
        if kind == "sentry-api":  # Sentry knows the release the lab's app pods run
            from .standins.sentry_api import deployed_release

            return kinds[kind](root, release=deployed_release(s["kube-api"].read_state()))
        return kinds[kind](root)

    def seed(self, kind: str, svc: Launcher) -> None:
        """First-start data: Studio's tables, the bucket's objects, readiness wired to the real app."""
        if self.variant.runs_studio and kind in ("postgres", "fake-gcs"):
            from . import studio_lab

            studio_lab.seed(self, kind, svc)
        elif kind == "postgres":
            from .studio_schema import create_schema, seed_healthy

            with svc.connect() as conn:
                create_schema(conn)
                seed_healthy(conn)
        elif kind == "fake-gcs":
            names = svc.seed_studio_content()
            storage = sorted(n for n in names.get("storage", []))
            databases = sorted(n for n in names.get("databases", []) if "-" not in n.rsplit("/", 1)[-1])
            from .servers.studio_nginx import STATIC_SAMPLE
            from .studio_schema import add_published_channels

            # the bucket's channel databases belong to public channels of the database, as in Studio
            with self["postgres"].connect() as conn:
                add_published_channels(conn, [n.rsplit("/", 1)[-1].split(".")[0] for n in databases],
                                       version=svc.options["seeded"]["versions"], name=self.variant.channel_name)

            self.extra["samples"] = {"static": STATIC_SAMPLE,
                                     "storage": "/content/" + storage[0] if storage else "",
                                     "databases": "/content/" + databases[0] if databases else ""}
        elif kind == "doctor":
            # the cluster lists deploy/'s doctor (its labelled Service) and its pod's port leads to this serve
            from .standins.kubernetes.doctor import with_doctor

            kube = self["kube-api"]
            kube.write_state(with_doctor(kube.read_state(), svc.address, self.variant.namespace))
        elif kind == "kube-api":
            # the pod network: each frontend pod's app and proxy ports lead to its own gunicorn and nginx
            # (each pod is then Ready while its own /healthz answers, as its readinessProbe says)
            svc.connect_pods("frontend", {self.variant.containers["app"]: self.pods("studio-app"),
                                          self.variant.containers["proxy"]: self.pods("studio-nginx")})
            # each worker pod's container runs while the lab's Celery worker does (no probe: its main process)
            if "celery" in self.services:
                svc.connect_processes("workers", self.variant.containers["worker"], self["celery"].pidfile, "celery")
            # Redis, the Cloud SQL proxy and Traefik's API entrypoint on their pods: a port-forward reaches them
            from .standins.kubernetes.backing import with_backing, with_ingress_api

            state = with_backing(svc.read_state(), self.variant.namespace,
                                 redis=self["redis"].address if "redis" in self.services else "",
                                 postgres=self["postgres"].address if "postgres" in self.services else "")
            ingress = self.services.get("traefik")
            if ingress is not None and getattr(ingress, "api_port", 0):
                state = with_ingress_api(state, f"127.0.0.1:{ingress.api_port}")
            svc.write_state(state)

    def up(self, progress: Callable[[str], None] = lambda msg: None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if self.variant.runs_studio:
            from . import studio_lab

            studio_lab.prepare(self, progress)
        started: list[Launcher] = []
        try:
            for kind in self.order:
                svc = self.services.get(kind)
                if kind == "latency":
                    if not self._latency_current(svc):
                        continue
                    svc = self.services.get(kind)  # None when it was stopped for new delays or endpoints
                if svc is not None and svc.alive():
                    progress(f"{kind:<15} running on {svc.address}")
                    continue
                fresh = svc is None
                svc = svc or self.build(kind)
                progress(f"{kind:<15} starting")
                svc.start()
                started.append(svc)
                self.services[kind] = svc
                if fresh:
                    self.seed(kind, svc)
                progress(f"{kind:<15} up on {svc.address}")
                self.save()
        except Exception:
            for svc in reversed(started):
                svc.stop()
            raise
        self.save()

    def _latency_current(self, svc) -> bool:
        """Whether the delaying relay belongs in this lab (``rtt_ms`` or ``jitter_ms`` set); a relay whose
        delays or endpoints no longer match is stopped here (the caller then starts a fresh one)."""
        want = (float(self.extra.get("rtt_ms") or 0), float(self.extra.get("jitter_ms") or 0))
        if svc is not None:
            from .latency import endpoints

            have = (float(svc.options.get("rtt_ms") or 0), float(svc.options.get("jitter_ms") or 0))
            if have != want or sorted(svc.routes.values()) != sorted(endpoints(self.direct_profile())):
                svc.stop()
                del self.services["latency"]
                self.save()
        return any(want)

    def status(self) -> list[dict]:
        return [{"kind": k, "address": self.services[k].address, "pid": self.services[k].pid,
                 "running": self.services[k].alive()} for k in self.order if k in self.services]

    def down(self, progress: Callable[[str], None] = lambda msg: None) -> None:
        for kind in reversed(self.order):
            svc = self.services.get(kind)
            if svc is not None:
                progress(f"{kind:<15} stopping")
                svc.stop()
                stop_holders = getattr(svc, "stop_holders", None)
                if stop_holders:
                    stop_holders()
        for pid in self.extra.get("holders", []):
            from .launcher import stop_pid

            stop_pid(pid)
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        self.services.clear()
