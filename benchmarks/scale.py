"""Scale: each layer against a big deployment, printing the requests the doctor sent, its wall time and
its peak RSS (issue 28; targets: requests bounded by pages, not by objects; peak RSS <= 150 MiB).

Scenarios (the servers run in this process, the doctor in a child so that its peak RSS is its own):

- ``kubernetes``: a cluster of 5,000 pods in 300 Deployments across 20 namespaces (the API stand-in);
  the doctor's namespace holds 1/20 of them.
- ``gcs``: a bucket of 1,000,000 objects (half under ``storage/``, half under ``databases/``), served page
  by page from arithmetic by a canned JSON API, never held in memory; the doctor samples, never lists it whole.
- ``dns``: a zone of 2,000 DNS records, in the CloudFlare v4 API stand-in and in the lab's DNS server.
- ``traefik``: a real Traefik with 500 routers (file provider, one TLS router per hostname).
- ``sentry``: a Sentry project with 10,000 unresolved issues (the Sentry API stand-in).

``--rtt MS``: each request to the kubernetes and gcs servers waits MS first (one round trip of a kept-alive
connection across a network), so that what is sequential shows in the wall time.

Run: .venv/bin/python benchmarks/scale.py [--only kubernetes,gcs,dns,traefik,sentry] [--runs 3] [--rtt 80]
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROUND_TRIP_S = [0.0]  # --rtt: what each request of the kubernetes and gcs stand-ins waits first

# The child: counts every request leaving it (httpx, requests, urllib3, dnspython), runs the layers.
CHILD = r"""
import json, sys, time
from collections import Counter
counts = Counter()
import httpx, urllib3, dns.query
def wrap(owner, name, label):
    original = getattr(owner, name)
    def counted(*a, **k):
        counts[label] += 1
        return original(*a, **k)
    setattr(owner, name, counted)
wrap(httpx.HTTPTransport, "handle_request", "http")
wrap(urllib3.connectionpool.HTTPConnectionPool, "_make_request", "http")
for fn in ("udp", "tcp", "https"):
    wrap(dns.query, fn, "dns")
from studiodoctor import engine
from studiodoctor.config import profile_from_data
spec = json.loads(sys.argv[1])
profile = profile_from_data("scale", spec["profile"], env={})
t0 = time.perf_counter()
report = engine.check(profile, layers=spec["layers"], options=spec.get("options") or {})
wall = time.perf_counter() - t0
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))  # this image's own peak
print(json.dumps({"wall": wall, "requests": dict(counts), "rss_mib": hwm / 1024,
                  "results": {r.id: [r.status.value, r.summary[:90]] for r in report.results},
                  "listings": {r.id: {k: r.evidence[k] for k in ("audited", "requests", "ranges", "sequential_requests",
                                                                 "list_ms") if k in r.evidence}
                               for r in report.results if isinstance(r.evidence, dict) and "requests" in r.evidence}}))
"""


def run_child(profile: dict, layers: list[str], options: dict | None = None) -> dict:
    spec = json.dumps({"profile": profile, "layers": layers, "options": options or {}})
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, spec], stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        proc.wait()
        if not out.strip():
            err.seek(0)
            sys.exit(f"the doctor failed: {err.read().decode(errors='replace')[-800:]}")
    return json.loads(out)  # rss_mib: the child's VmHWM (ru_maxrss would count the parent's pages before exec)


# ---------------------------------------------------------------------------------------------- kubernetes
def kubernetes(root: Path):
    from studiodoctor.lab.standins import kubernetes as K

    namespaces = ["studio"] + [f"team-{i:02d}" for i in range(19)]
    releases = 150  # two Deployments each: 300
    state = None
    for k in range(releases):
        ns = namespaces[k % len(namespaces)]
        pods = 5000 // releases + (1 if k < 5000 % releases else 0)
        part = K.studio_state(namespace=ns, release="master" if k == 0 else f"r{k:03d}", hostnames=("studio.localtest",),
                              frontend=pods - pods // 2, workers=pods // 2)
        if state is None:
            state = part
            continue
        mine = state["namespaces"].setdefault(ns, {"pods": [], "deployments": [], "ingresses": [], "services": [],
                                                   "events": []})
        for key, items in part["namespaces"][ns].items():
            mine.setdefault(key, []).extend(items)
        state["metrics"].setdefault(ns, []).extend(part["metrics"][ns])
    server = K.KubeAPIServer(root, hostnames=["studio.localtest"])
    state["round_trip_ms"] = ROUND_TRIP_S[0] * 1000
    server.start(state=state)
    total = sum(len(n["pods"]) for n in state["namespaces"].values())
    deps = sum(len(n["deployments"]) for n in state["namespaces"].values())
    profile = {"kubernetes": {"api_url": server.url, "namespace": "studio"},
               "dns": {"hostnames": ["studio.localtest"]}, "timeout": 30}
    return (f"{total} pods in {deps} Deployments across {len(state['namespaces'])} namespaces "
            f"({len(state['namespaces']['studio']['pods'])} in the doctor's)"), profile, ["kubernetes"], server.stop


# ---------------------------------------------------------------------------------------------- gcs
def gcs(root: Path, objects: int = 1_000_000):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, unquote, urlsplit

    bucket, half = "studio-content", objects // 2
    storage_cc, db_cc = "public, max-age=31536000, immutable", "private, max-age=5, no-transform"

    def name(prefix: str, i: int) -> str:
        """The i-th name under ``prefix`` in name order: ids spread evenly over the 128-bit space, as
        random channel ids and md5s are (every first hex digit as common as the others)."""
        h = f"{i * 16 ** 32 // half:032x}"
        return f"databases/{h}.sqlite3" if prefix == "databases/" else f"storage/{h[0]}/{h[1]}/{h}.pdf"

    def obj(prefix: str, i: int) -> dict:
        return {"kind": "storage#object", "name": name(prefix, i), "bucket": bucket, "size": "36",
                "cacheControl": db_cc if prefix == "databases/" else storage_cc, "contentEncoding": "gzip",
                "updated": "2026-11-01T12:00:00.000Z", "contentType": "application/octet-stream"}

    class Names:
        """The whole bucket in name order (databases/ then storage/), computed, never built."""

        def __len__(self):
            return 2 * half

        def __getitem__(self, j):
            return name("databases/" if j < half else "storage/", j % half)

    def item(j: int) -> dict:
        return obj("databases/" if j < half else "storage/", j % half)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, status: int, body: dict | None, headers: dict | None = None):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for k, v in {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            time.sleep(ROUND_TRIP_S[0])
            parts = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            path = unquote(parts.path)
            if path.endswith(f"/b/{bucket}/o"):  # the JSON API listing: name order, prefix, startOffset/endOffset
                names, prefix = Names(), q.get("prefix", "")
                lo = max(bisect.bisect_left(names, prefix), bisect.bisect_left(names, q.get("startOffset", "")))
                hi = bisect.bisect_left(names, prefix + "\U0010ffff")
                if q.get("endOffset"):
                    hi = min(hi, bisect.bisect_left(names, q["endOffset"]))
                start, size = max(lo, int(q.get("pageToken", 0))), min(1000, int(q.get("maxResults", 1000)))
                body = {"kind": "storage#objects", "items": [item(j) for j in range(start, min(hi, start + size))]}
                if start + size < hi:
                    body["nextPageToken"] = str(start + size)
                return self._send(200, body)
            if path.endswith(f"/b/{bucket}"):
                return self._send(200, {"kind": "storage#bucket", "name": bucket, "id": bucket, "location": "US",
                                        "storageClass": "STANDARD",
                                        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}})
            if path.startswith(f"/{bucket}/"):  # the public URL of an object
                key = path[len(bucket) + 2:]
                cc = db_cc if key.startswith("databases/") else storage_cc
                if key.startswith("databases/"):
                    return self._send(403, {"error": "AccessDenied"})
                return self._send(200, {}, {"Cache-Control": cc})
            if path in (f"/{bucket}", f"/{bucket}/"):
                return self._send(403, {"error": "AccessDenied"})
            return self._send(404, {"error": {"code": 404, "message": "Not Found"}})

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    profile = {"gcs": {"bucket": bucket, "endpoint": url, "public_url": url}, "timeout": 60}

    def stop():
        server.shutdown()
        server.server_close()

    return f"a bucket of {objects:,} objects ({half:,} under storage/, {half:,} under databases/)", profile, \
        ["gcs"], stop


# ---------------------------------------------------------------------------------------------- dns
def dns_zone(root: Path, records: int = 2000):
    from studiodoctor.lab.edge_lab import EDGE_IP, records_for
    from studiodoctor.lab.standins.cloudflare_api import CloudflareAPI
    from studiodoctor.lab.standins.dns_server import DnsServer

    zone, host = "localtest", "studio.localtest"
    filler = [{"name": f"host-{i:04d}.{zone}", "type": "A" if i % 3 else "CNAME",
               "value": f"10.0.{i // 250}.{i % 250}" if i % 3 else host} for i in range(records)]
    served = records_for([host], zone)
    dns = DnsServer(root, zone=zone, records=served + filler[:records - len(served)]).start()
    cf = CloudflareAPI(root, zone=zone, hostnames=[host]).start()
    state = cf.read_state()
    zone_state = next(iter(state["zones"].values())) if isinstance(state.get("zones"), dict) else state["zones"][0]
    template = dict(zone_state["dns_records"][0])
    for i, rec in enumerate(filler[:records - len(zone_state["dns_records"])]):
        zone_state["dns_records"].append({**template, "id": f"rec{i:06d}", "name": rec["name"],
                                          "type": rec["type"], "content": rec["value"], "proxied": False})
    cf.write_state(state)
    n = len(zone_state["dns_records"])
    profile = {"dns": {"hostnames": [host], "resolvers": [f"127.0.0.1:{dns.port}"], "zone": zone,
                       "extra_edge_ranges": [f"{EDGE_IP}/32"]},
               "cloudflare": cf.profile()["cloudflare"], "timeout": 30}

    def stop():
        dns.stop()
        cf.stop()

    return f"a zone of {n:,} DNS records (CloudFlare API; {records:,} in the DNS server)", profile, ["dns", "cloudflare"], stop


# ---------------------------------------------------------------------------------------------- traefik
def traefik(root: Path, routers: int = 500):
    from studiodoctor.lab.certs import LabCA
    from studiodoctor.lab.servers.traefik_server import TraefikServer

    hostnames = [f"studio-{i:03d}.localtest" for i in range(routers - 1)] + ["studio.localtest"]
    server = TraefikServer(root, hostnames=hostnames, backend="http://127.0.0.1:9", ca=LabCA(root)).start()
    profile = server.profile()
    profile["traefik"]["hostnames"] = ["studio.localtest"]
    profile.update({"dns": {"hostnames": ["studio.localtest"]}, "timeout": 30})
    return f"Traefik with {routers} routers", profile, ["traefik"], server.stop


# ---------------------------------------------------------------------------------------------- sentry
def sentry(root: Path, issues: int = 10_000):
    from studiodoctor.lab.standins.sentry_api import SentryAPI

    server = SentryAPI(root).start()
    state = server.read_state()
    template = state["issues"][0]
    for i in range(issues - len(state["issues"])):
        state["issues"].append({**template, "id": str(4200000000 + i), "shortId": f"STUDIO-{i:X}",
                                "title": f"ValueError: case {i}", "first_seen_min": 60 * 24 * (10 + i % 300),
                                "last_seen_min": 5 + i % 600, "hourly": [i % 3] * 24})
    server.write_state(state)
    return f"a Sentry project with {len(state['issues']):,} unresolved issues", server.profile() | {"timeout": 30}, \
        ["sentry"], server.stop


SCENARIOS = {"kubernetes": kubernetes, "gcs": gcs, "dns": dns_zone, "traefik": traefik, "sentry": sentry}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rtt", type=float, default=0.0,
                    help="ms each request of the kubernetes and gcs scenarios waits first, as one round trip of a "
                         "kept-alive connection across a network (the stand-ins' round_trip knob)")
    args = ap.parse_args()
    ROUND_TRIP_S[0] = args.rtt / 1000
    rows = []
    for key in args.only.split(","):
        with tempfile.TemporaryDirectory(prefix=f"scale-{key}-") as tmp:
            t0 = time.perf_counter()
            what, profile, layers, stop = SCENARIOS[key](Path(tmp))
            seed = time.perf_counter() - t0
            try:
                runs = [run_child(profile, layers) for _ in range(args.runs)]
            finally:
                stop()
        last = runs[-1]
        requests = sum(last["requests"].values())
        wall = statistics.median(r["wall"] for r in runs)
        rss = max(r["rss_mib"] for r in runs)
        statuses = {}
        for status, _ in last["results"].values():
            statuses[status] = statuses.get(status, 0) + 1
        print(f"{key}: {what} (set up in {seed:.1f} s)")
        print(f"  layers {', '.join(layers)}: {requests} requests ({', '.join(f'{k} {v}' for k, v in last['requests'].items())}), "
              f"wall median {wall:.2f} s of {args.runs}, peak RSS {rss:.0f} MiB; results {statuses}")
        for cid, figures in last.get("listings", {}).items():
            print(f"    {cid}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        for cid, (status, summary) in last["results"].items():
            if status not in ("ok", "skip"):
                print(f"    {status:<7} {cid}: {summary}")
        rows.append((key, what, requests, wall, rss))
    print("\n| scale | requests | wall | peak RSS | RSS <= 150 MiB |")
    print("|---|---|---|---|---|")
    for key, what, requests, wall, rss in rows:
        print(f"| {what} | {requests} | {wall:.2f} s | {rss:.0f} MiB | {'met' if rss <= 150 else 'NOT met'} |")


if __name__ == "__main__":
    main()
