"""The third way in: a port-forward through the API server, opened by the run itself when no in-cluster doctor
answers. The Kubernetes stand-in serves ``pods/portforward`` as kube-apiserver does (WebSocket,
``v4.channel.k8s.io``, RBAC ``create pods/portforward``), proved with the real client library
(``kubernetes.stream.portforward``); the doctor then checks the real redis-server, PostgreSQL and Traefik
through its own tunnels, closes them, and says so in each result; a denied grant is a `skip` with the line."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from studiodoctor import engine
from studiodoctor.lab.certs import LabCA
from studiodoctor.lab.laptop import without_host
from studiodoctor.lab.servers.traefik_server import TraefikServer
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.lab.standins.kubernetes.backing import with_backing, with_ingress_api
from studiodoctor.model import Status

TOKEN = "port-forward-token-7d1c"
REDIS_POD = "master-redis-master-0"


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-pf")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traefik(tmp_path_factory):
    root = tmp_path_factory.mktemp("traefik-pf")
    server = TraefikServer(root, hostnames=["studio.localtest"], backend="http://127.0.0.1:9", ca=LabCA(root)).start()
    yield server
    server.stop()


def put(kube, state, deny=()):
    state["token"] = TOKEN
    state["deny"] = list(deny)
    kube.write_state(state)


def laptop(make_profile, kube, postgres_server=None, **extra):
    """A laptop: the API server and a token, the database's credentials without an address; no doctor."""
    sections = {"kubernetes": {"api_url": kube.url, "namespace": "studio", "token": TOKEN}, **extra}
    if postgres_server is not None:
        sections["postgres"] = {"port_forward_dsn": without_host(postgres_server.dsn())}
    return make_profile(sections, name="laptop", timeout=8)


def by_id(report):
    return {r.id: r for r in report.results}


def _sdk(kube):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = kube.url
    cfg.api_key = {"authorization": f"Bearer {TOKEN}"}
    return client.CoreV1Api(client.ApiClient(cfg))


def test_the_stand_in_speaks_the_client_librarys_port_forward(kube, redis_server):
    """``kubernetes.stream.portforward`` reaches the real redis-server; a port that leads nowhere answers on the
    error channel; a denied grant is the API server's 403; a request that is no upgrade its 400."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream import portforward

    put(kube, with_backing(K.studio_state(), "studio", redis=redis_server.address))
    api = _sdk(kube)
    pf = portforward(api.connect_get_namespaced_pod_portforward, REDIS_POD, "studio", ports="6379")
    sock = pf.socket(6379)
    sock.settimeout(5)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n", pf.error(6379)
    sock.close()

    pf = portforward(api.connect_get_namespaced_pod_portforward, "master-cloudsql-proxy-5f6d7c8b9-r4t6z",
                     "studio", ports="5432")   # the proxy's port leads to no process here
    sock = pf.socket(5432)
    sock.settimeout(5)
    assert sock.recv(64) == b""
    assert "error forwarding port 5432" in (pf.error(5432) or ""), pf.error(5432)

    put(kube, with_backing(K.studio_state(), "studio", redis=redis_server.address),
        deny=[{"verb": "create", "resource": "pods/portforward", "group": ""}])
    with pytest.raises(ApiException, match="403"):
        portforward(api.connect_get_namespaced_pod_portforward, REDIS_POD, "studio", ports="6379")

    req = urllib.request.Request(f"{kube.url}/api/v1/namespaces/studio/pods/{REDIS_POD}/portforward?ports=6379",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    put(kube, with_backing(K.studio_state(), "studio", redis=redis_server.address))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)
    assert refused.value.code == 400 and b"Upgrade request required" in refused.value.read()


def test_without_a_doctor_the_laptop_checks_through_port_forwards_it_opens_and_closes(
        kube, redis_server, postgres_server, traefik, make_profile):
    state = with_backing(K.studio_state(), "studio", redis=redis_server.address, postgres=postgres_server.address)
    put(kube, with_ingress_api(state, f"127.0.0.1:{traefik.api_port}"))
    kube.methods().clear()
    report = engine.check(laptop(make_profile, kube, postgres_server), layers=["redis", "postgres", "traefik"])
    results = by_id(report)
    expected = {"redis.reachable": f"pod studio/{REDIS_POD}:6379",
                "postgres.reachable": "pod studio/master-cloudsql-proxy-5f6d7c8b9-r4t6z:5432",
                "traefik.api": "pod kube-system/traefik-6f7d8b9c4-x2k9p:9000"}
    for cid, pod in expected.items():
        res = results[cid]
        assert res.status is Status.OK, (cid, res.status, res.summary, res.evidence)
        assert res.evidence["via"] == f"port-forward {pod}", (cid, res.evidence)
        assert res.vantage == "local" and "for this run only" in res.evidence["port_forward"]["opened"]
    assert "(port-forward)" in results["redis.reachable"].summary, results["redis.reachable"].summary
    assert results["postgres.connections"].status is Status.OK, results["postgres.connections"].summary
    assert not [t.name for t in threading.enumerate() if t.name.startswith("port-forward ")], \
        "a tunnel outlived its run"
    # a transport only: the API server saw GETs (the WebSocket upgrades) and reads, never a write
    methods = {m for m, path in kube.methods().read() if path.endswith("/portforward")}
    assert methods == {"GET"}, kube.methods().read()


def test_a_denied_port_forward_is_a_skip_with_the_rbac_line(kube, redis_server, postgres_server, make_profile):
    put(kube, with_backing(K.studio_state(), "studio", redis=redis_server.address, postgres=postgres_server.address),
        deny=[{"verb": "create", "resource": "pods/portforward", "group": ""}])
    report = engine.check(laptop(make_profile, kube, postgres_server), layers=["redis", "postgres", "celery"])
    results = by_id(report)
    assert results and all(r.status is Status.SKIP for r in results.values()), \
        [(r.id, r.status, r.summary) for r in results.values()]
    reach = results["redis.reachable"]
    assert "cannot create resource \"pods/portforward\"" in reach.summary, reach.summary
    assert 'resources: ["pods/portforward"], verbs: ["create"]' in reach.hint, reach.hint
    lines = [c.text for c in reach.commands]
    assert any("create role studiodoctor-port-forward --verb=create --resource=pods/portforward" in t for t in lines), lines
    assert any("apply -f deploy/kubernetes/" in t for t in lines), lines   # or deploy the in-cluster doctor


def test_redis_down_behind_a_tunnel_is_its_failure_not_a_skip(kube, make_profile):
    """The pod is there and the grant too, but nothing answers on its port: what the checks see through the
    tunnel is a dead Redis (as through `kubectl port-forward`), never a guess of ok nor a skip."""
    put(kube, with_backing(K.studio_state(), "studio"))   # no process behind the Redis pod's port
    res = by_id(engine.check(laptop(make_profile, kube), layers=["redis"]))["redis.reachable"]
    assert res.status in (Status.FAIL, Status.ERROR) and res.status is not Status.SKIP, (res.status, res.summary)
    assert res.evidence["via"] == f"port-forward pod studio/{REDIS_POD}:6379", res.evidence
    assert any("error forwarding port 6379" in e for e in res.evidence["port_forward"].get("stream_errors", [])), \
        res.evidence
    assert any(c.text.endswith(f"-n studio port-forward pod/{REDIS_POD} 6379:6379") for c in res.commands), \
        [c.text for c in res.commands]   # to look again by hand


def test_no_redis_pod_and_no_postgres_credentials_say_what_would_open_a_way(kube, make_profile):
    put(kube, K.studio_state())
    results = by_id(engine.check(laptop(make_profile, kube), layers=["redis", "postgres"]))
    assert results["redis.reachable"].status is Status.SKIP and "no Ready pod runs Redis" in \
        results["redis.reachable"].summary, results["redis.reachable"].summary
    pg = results["postgres.reachable"]
    assert pg.status is Status.SKIP and "postgres.port_forward_dsn" in pg.summary + pg.hint, (pg.summary, pg.hint)


def test_the_tunnels_credentials_never_reach_an_output(kube, redis_server, make_profile):
    """The laptop's Redis password, put into the URL the tunnel makes, stays a secret: a check that echoes
    that URL (as a hostile answer would) shows it in none of the formats."""
    from studiodoctor.model import fail
    from studiodoctor.registry import Registry
    from studiodoctor.render import render
    from studiodoctor.secrets import Redactor

    secret = "Tunnel-Secret-55e1"
    reg = Registry()
    reg.check("redis.echo", title="echo", needs=("redis.url",))(
        lambda ctx: fail(f"echo {ctx.profile.value('redis.url')}", evidence={"url": ctx.profile.value("redis.url")}))
    put(kube, with_backing(K.studio_state(), "studio", redis=redis_server.address))
    profile = laptop(make_profile, kube, redis={"port_forward_url": f"redis://:{secret}@/0"})
    report = engine.check(profile, layers=["redis"], registry=reg)
    data = report.to_dict(Redactor(profile.secrets))
    [echo] = data["results"]
    assert echo["status"] == "fail" and echo["evidence"]["via"].startswith("port-forward pod studio/"), echo
    assert "(port-forward)" in echo["summary"], echo["summary"]   # the tunnel's URL was the one echoed
    for fmt in ("json", "table", "markdown", "junit", "nagios", "prometheus", "html"):
        assert secret not in render(data, fmt), fmt
