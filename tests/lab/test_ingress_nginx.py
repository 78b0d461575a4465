"""The lab's ingress-nginx (the other variant's ingress): its certificate faults are seen at the origin
by traefik.certificates even though the cluster says ingress-nginx, not Traefik, routes the hostname."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest

from studiodoctor import engine
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.certs import LabCA
from studiodoctor.lab.servers.ingress_nginx import IngressNginx
from studiodoctor.lab.variants import OTHER
from studiodoctor.model import Status

HOST = OTHER.hostname


@pytest.fixture(scope="module")
def ingress(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingress")
    root.chmod(0o755)
    server = IngressNginx(root, hostnames=[HOST], backend="http://127.0.0.1:9", ca=LabCA(root)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    path = tmp_path_factory.mktemp("kube") / "state.json"
    path.write_text(json.dumps(K.variant_state(OTHER)))
    server = K.serve(0, str(path))
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _certificates(ingress, kube, make_profile):
    prof = make_profile({"traefik": {"entrypoint": ingress.entrypoint}, "dns": {"hostnames": [HOST]},
                         "http": {"ca_file": ingress.ca_file},
                         "kubernetes": {"api_url": kube, "namespace": OTHER.namespace}})
    report = engine.check(prof, check_ids=["traefik.certificates", "kubernetes.ingress_controller"])
    return {r.id: r for r in report.results}


@pytest.mark.parametrize("fault", ["default-cert", "expired-cert"])
def test_origin_certificate_faults_fail_whichever_controller_routes(ingress, kube, make_profile, fault):
    res = _certificates(ingress, kube, make_profile)
    assert res["kubernetes.ingress_controller"].evidence["controllers"] == ["ingress-nginx"]
    assert res["traefik.certificates"].status is Status.OK
    ingress.set_fault(fault, True)
    try:
        res = _certificates(ingress, kube, make_profile)
        assert res["traefik.certificates"].status is Status.FAIL, res["traefik.certificates"].summary
    finally:
        ingress.set_fault(fault, False)


def test_backend_faults_answer_like_the_controller(ingress):
    """503 for an Ingress whose Service does not exist; 502 when its endpoint refuses."""
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(ingress.ca_file)))
    with httpx.Client(transport=transport) as http:
        def get(host):
            return http.get(f"{ingress.entrypoint}/", headers={"Host": host},
                            extensions={"sni_hostname": host})
        assert get(HOST).status_code == 502  # backend http://127.0.0.1:9 refuses
        ingress.set_fault("missing-service", True)
        assert get(HOST).status_code == 503
        ingress.set_fault("missing-service", False)
