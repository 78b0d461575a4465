"""The Kubernetes API stand-in as test fixtures of the kubernetes layer's tests (``from kube_standin import *``):
``kube`` (one stand-in process per module), ``cluster`` (reset to a healthy Studio namespace), ``run``
(the kubernetes layer against it, with faults)."""

from __future__ import annotations

import pytest

from studiodoctor import engine
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer

__all__ = ["HOST", "kube", "cluster", "run"]

HOST = "studio.localtest"


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube"), hostnames=[HOST]).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(kube):
    """The stand-in reset to a healthy Studio namespace; tests add faults or edit the state."""
    kube.write_state(K.studio_state(hostnames=(HOST,)))
    kube.reset_counts()
    return kube


@pytest.fixture
def run(make_profile, cluster):
    def go(*faults, kubernetes=None, **top):
        state = cluster.read_state()
        state["faults"] = list(faults)
        cluster.write_state(state)
        section = {"api_url": cluster.url, "namespace": "studio", **(kubernetes or {})}
        profile = make_profile({"kubernetes": section, "dns": {"hostnames": [HOST]}}, timeout=5, **top)
        report = engine.check(profile, layers=["kubernetes"])
        return {r.id: r for r in report.results}

    return go
