"""The Kubernetes stand-in's kubelet (studiodoctor.lab.standins.kubernetes.kubelet): a pod's readiness follows
its own readinessProbe as a kubelet runs it, against a real HTTP server on loopback playing the pod's app.
One or two failed probes keep the pod Ready and in its Service; failureThreshold (3) failures in a row take it
out; one success (successThreshold 1) brings it back; an answer slower than timeoutSeconds is a failure."""

from __future__ import annotations

import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.lab.standins.kubernetes.network import is_ready

FAILURE_THRESHOLD = 3
# this pod's probe is more patient than the lab's 1 s, so that a loaded machine's slow answer is not a failure the
# test did not plan; "slow" answers past it
TIMEOUT_S = 3
SLOW_S = 3.5


class _App(BaseHTTPRequestHandler):
    """A pod's app: each /healthz answers the next planned outcome (200, 500 or "slow": 200 after SLOW_S, past
    the probe's timeout), then the standing one; every probe's outcome is logged with the time it was decided."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        srv = self.server
        with srv.lock:  # logged when decided, before the answer leaves: the kubelet can only see it later
            outcome = srv.plan.popleft() if srv.plan else srv.standing
            srv.log.append((time.time(), outcome))
        if outcome == "slow":
            time.sleep(SLOW_S)
        self.send_response(500 if outcome == 500 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    srv.daemon_threads = True
    srv.lock, srv.plan, srv.standing, srv.log = threading.Lock(), deque(), 200, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def cluster(app, tmp_path_factory):
    """A healthy Studio namespace whose first frontend pod's app port (8081, its readiness /healthz, timeoutSeconds
    TIMEOUT_S) leads to ``app``; the other pods' apps are not played (not probed)."""
    state = K.studio_state()
    pod = next(p for p in state["namespaces"]["studio"]["pods"] if p["metadata"]["labels"].get("tier") == "frontend")
    next(c for c in pod["spec"]["containers"] if c.get("readinessProbe"))["readinessProbe"]["timeoutSeconds"] = TIMEOUT_S
    state["network"] = {f"{pod['status']['podIP']}:8081": f"127.0.0.1:{app.server_address[1]}"}
    kube = KubeAPIServer(tmp_path_factory.mktemp("kubelet")).start(state=state)
    kube.pod, kube.app = pod["metadata"]["name"], state["network"][f"{pod['status']['podIP']}:8081"]
    yield kube
    kube.stop()


@pytest.fixture
def healthy(cluster, app):
    with app.lock:
        app.plan.clear()
        app.standing = 200
    cluster.await_pods(True, cluster.app)
    cluster.await_kubelet()
    return cluster


def _probe(kube) -> dict:
    return next(t for t in kube.kubelet_status()["targets"] if t["pod"] == kube.pod)


def _answers_since(app, t0: float) -> list[tuple[float, object]]:
    with app.lock:
        return [a for a in app.log if a[0] >= t0]


def _stand(kube, app, outcome, ready: bool) -> float:
    """Let every probe from now on get ``outcome``; wait until the API shows the pod ``ready`` or not (the
    kubelet's flip, from the API itself); returns when the change began (wall clock)."""
    with app.lock:  # every outcome decided after t0 is the new one
        app.standing, t0 = outcome, time.time()
    kube.await_pods(ready, kube.app)
    return t0


def _in_service(kube) -> bool:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{kube.url}/api/v1/namespaces/studio/endpoints/master-studio-app", timeout=5) as r:
        subsets = json.loads(r.read()).get("subsets") or []
    return any(a["targetRef"]["name"] == kube.pod for s in subsets for a in s.get("addresses") or [])


def _events(kube) -> list[dict]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{kube.url}/api/v1/namespaces/studio/events", timeout=5) as r:
        return [e for e in json.loads(r.read())["items"]
                if e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == kube.pod]


def test_the_kubelet_follows_the_pods_own_probe_and_the_labs_declares_its_timing(healthy):
    """The lab's choice (a period of 1 s) is in the pod spec the doctor reads, not a hidden constant; the
    failure budget is Kubernetes' default; the kubelet follows what the pod says (this one's timeout)."""
    lab_probe = next(c["readinessProbe"] for p in K.studio_state()["namespaces"]["studio"]["pods"]
                     for c in p["spec"]["containers"] if c.get("readinessProbe"))
    assert (lab_probe["periodSeconds"], lab_probe["failureThreshold"], lab_probe["successThreshold"]) == (1, 3, 1)
    probe = _probe(healthy)
    assert (probe["periodSeconds"], probe["timeoutSeconds"], probe["failureThreshold"],
            probe["successThreshold"]) == (1, TIMEOUT_S, FAILURE_THRESHOLD, 1), probe


def test_one_or_two_failed_probes_keep_the_pod_ready_and_in_its_service(healthy, app):
    since = _probe(healthy)["since"]
    with app.lock:  # the next two probes decided after t0 fail
        app.plan.extend([500, 500])
        t0 = time.time()
    seen_out = []
    # until the probe after the two failures has passed, every read of the API shows the pod Ready and serving
    while not [a for a in _answers_since(app, t0) if a[1] == 200] or len(_answers_since(app, t0)) < 3:
        probe = _probe(healthy)
        if probe["ready"] is False or not _in_service(healthy):
            seen_out.append(probe)
        time.sleep(0.05)
        assert time.time() - t0 < 30, f"the app's probes: {_answers_since(app, t0)}"
    answers = [outcome for _, outcome in _answers_since(app, t0)]
    assert answers[:3] == [500, 500, 200], answers
    assert not seen_out, f"left Ready after fewer than {FAILURE_THRESHOLD} failures: {seen_out}"
    healthy.await_kubelet()
    assert _probe(healthy)["since"] == since and healthy.ready_behind(healthy.app)


def test_three_failures_in_a_row_take_it_out_and_one_success_brings_it_back(healthy, app):
    t0 = _stand(healthy, app, 500, ready=False)
    probe = _probe(healthy)
    failures = [t for t, outcome in _answers_since(app, t0) if outcome == 500]
    assert len(failures) >= FAILURE_THRESHOLD, (failures, probe)
    # out at the third failure, not before, and not later than the next probe
    assert failures[FAILURE_THRESHOLD - 1] <= probe["since"], (failures, probe)
    assert len(failures) == FAILURE_THRESHOLD or probe["since"] < failures[FAILURE_THRESHOLD], (failures, probe)
    assert not _in_service(healthy)
    # the kubelet's event counts the failures in a row, from the first one
    [event] = _events(healthy)
    assert event["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 500", event
    assert event["count"] >= FAILURE_THRESHOLD, event
    t1 = _stand(healthy, app, 200, ready=True)
    probe = _probe(healthy)
    ok = [t for t, outcome in _answers_since(app, t1) if outcome == 200]
    assert ok and ok[0] <= probe["since"] and (len(ok) == 1 or probe["since"] < ok[1]), (ok, probe)
    assert _in_service(healthy) and not _events(healthy)


def test_a_probe_slower_than_its_timeout_is_a_failure(healthy, app):
    t0 = _stand(healthy, app, "slow", ready=False)
    slow = [t for t, outcome in _answers_since(app, t0) if outcome == "slow"]
    [event] = _events(healthy)
    assert "context deadline exceeded" in event["message"], event
    assert event["count"] >= FAILURE_THRESHOLD, (event, slow)
