"""`studiodoctor preflight` against real redis-server and PostgreSQL with limited users, and the Kubernetes,
CloudFlare and GCS stand-ins: identity, needed (the checks' declarations) vs granted, what cannot run, and
the exact grant to add."""

from __future__ import annotations

import json

import pytest
import yaml

from checks.celery import CONTROL_ACL, READ_ACL as CELERY_READ_ACL, heartbeat_acl
from checks.redis import READ_ACL as REDIS_READ_ACL
from studiodoctor import preflight, studio_facts as facts
from studiodoctor.cli import main
from studiodoctor.lab import studio_schema
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.cloudflare_api import CloudflareAPI
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.model import Status

HOST = "studio.localtest"


def set_user(redis_server, name, rules, password="pf-pw-5"):
    redis_server.client().execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", "-@all", *rules)
    return redis_server.url(0, user=name, password=password)


def results(profile, *layers):
    report = preflight.run(profile, list(layers))
    return report, {r.id: r for r in report.results}


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-pf"), hostnames=[HOST]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cf(tmp_path_factory):
    server = CloudflareAPI(tmp_path_factory.mktemp("cf-pf"), zone="localtest", hostnames=[HOST]).start()
    yield server
    server.stop()


@pytest.fixture
def pg_role(postgres_server):
    """A role with CONNECT only; the test grants what it needs."""
    with postgres_server.connect() as conn:
        studio_schema.create_schema(conn)
    role = "doctor_pf"
    dsn = postgres_server.create_role(role, "pf-pg-pw-3", monitor=False)
    postgres_server.execute(f"REVOKE pg_monitor FROM {role}")
    postgres_server.execute(f"REVOKE SELECT ON {', '.join(facts.STUDIO_TABLES)} FROM {role}")
    return postgres_server, role, dsn


def test_redis_read_user_is_granted_and_named(redis_server, make_profile):
    url = set_user(redis_server, "doctor-read", REDIS_READ_ACL)
    _, res = results(make_profile({"redis": {"url": url}}, timeout=5), "redis")
    r = res["redis.preflight"]
    assert r.status is Status.OK, r.summary
    assert "doctor-read" in r.evidence["identity"] and "ACL WHOAMI not permitted" in r.evidence["identity"]
    perms = {e["permission"]: e for e in r.evidence["permissions"]}
    assert set(perms) == set(REDIS_READ_ACL) and all(e["granted"] for e in perms.values())
    assert "redis.memory" in perms["+info"]["needed_by"]
    assert "pf-pw-5" not in json.dumps(r.to_dict())


def test_redis_user_without_info_names_the_acl_line_and_the_checks(redis_server, make_profile):
    url = set_user(redis_server, "doctor-read", ["+ping"])
    report, res = results(make_profile({"redis": {"url": url}}, timeout=5), "redis")
    r = res["redis.preflight"]
    assert r.status is Status.FAIL and int(report.exit_code) == 2, r.summary
    assert r.evidence["grants"] == ["ACL SETUSER doctor-read +info"]
    assert {"redis.memory", "redis.role", "redis.version"} <= set(r.evidence["checks_affected"])
    assert "redis.latency" not in r.evidence["checks_affected"]


def test_celery_user_that_may_dryrun_gets_the_exact_missing_rule(redis_server, make_profile):
    rules = [g for g in (*CELERY_READ_ACL, *CONTROL_ACL, "&/0.celery.pidbox", *heartbeat_acl(0)) if g != "+publish"]
    url = set_user(redis_server, "doctor-celery", [*rules, "+acl|whoami", "+acl|dryrun"])
    _, res = results(make_profile({"redis": {"url": url}}, timeout=5), "celery")
    r = res["celery.preflight"]
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["grants"] == ["ACL SETUSER doctor-celery +publish"]
    assert set(r.evidence["checks_affected"]) == {"celery.workers", "celery.saturation"}
    assert all(e["how"].startswith("ACL DRYRUN") for e in r.evidence["permissions"])


def test_celery_user_without_the_heartbeat_channel_gets_that_rule_alone(redis_server, make_profile):
    """SUBSCRIBE allowed but not on the workers' heartbeat channel: the command is granted (ACL checks it
    before the channel), the channel is the one rule to add, and only celery.busy_slots needs it."""
    rules = [*CELERY_READ_ACL, *CONTROL_ACL, "&/0.celery.pidbox", "+subscribe"]
    url = set_user(redis_server, "doctor-celery", [*rules, "+acl|whoami", "+acl|dryrun"])
    _, res = results(make_profile({"redis": {"url": url}}, timeout=5), "celery")
    r = res["celery.preflight"]
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["grants"] == ["ACL SETUSER doctor-celery &/0.celeryev/worker.heartbeat"], r.evidence["grants"]
    assert r.evidence["checks_affected"] == ["celery.busy_slots"]
    perms = {e["permission"]: e for e in r.evidence["permissions"]}
    assert perms["+subscribe"]["granted"] is True, perms["+subscribe"]


def test_least_privileged_celery_user_reads_tried_writes_honestly_unknown(redis_server, make_profile):
    """Without ACL DRYRUN the writes of the broadcast cannot be tried without writing: `error`, with the
    DRYRUN line an admin can run, and the reads the checks send tried and granted."""
    url = set_user(redis_server, "doctor-celery", [*CELERY_READ_ACL, *CONTROL_ACL, "&/0.celery.pidbox",
                                                   *heartbeat_acl(0)])
    keys_before = redis_server.client().dbsize()
    report, res = results(make_profile({"redis": {"url": url}}, timeout=5), "celery")
    r = res["celery.preflight"]
    assert r.status is Status.ERROR and int(report.exit_code) == 3, r.summary
    perms = {e["permission"]: e for e in r.evidence["permissions"]}
    assert perms["+llen"]["granted"] is True and perms["+llen"]["how"] == "tried LLEN celery"
    assert perms["+publish"]["granted"] is None
    assert "ACL DRYRUN doctor-celery PUBLISH /0.celery.pidbox x" in perms["+publish"]["detail"]
    assert redis_server.client().dbsize() == keys_before  # preflight wrote nothing


def test_postgres_role_memberships_and_missing_grants(pg_role, make_profile):
    pg, role, dsn = pg_role
    pg.execute(f"GRANT SELECT ON {facts.CHANNEL_TABLE} TO {role}")
    report, res = results(make_profile({"postgres": {"dsn": dsn}}, timeout=5), "postgres")
    r = res["postgres.preflight"]
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["identity"].startswith(f"{role}, member of")
    others = [t for t in facts.STUDIO_TABLES if t != facts.CHANNEL_TABLE]
    assert sorted(r.evidence["grants"]) == [f"GRANT SELECT ON {', '.join(others)} TO {role};",
                                            f"GRANT pg_monitor TO {role};"]
    assert {"postgres.connections", "postgres.locks", "celery.stuck_publishes"} <= set(r.evidence["checks_affected"])
    pg.execute(f"GRANT pg_monitor TO {role}")
    pg.execute(f"GRANT SELECT ON {', '.join(others)} TO {role}")
    _, res = results(make_profile({"postgres": {"dsn": dsn}}, timeout=5), "postgres")
    r = res["postgres.preflight"]
    assert r.status is Status.OK and "pg_monitor" in r.evidence["roles"], r.summary


def test_kubernetes_identity_and_a_role_for_what_is_denied(kube, make_profile):
    state = K.studio_state(hostnames=(HOST,))
    state["deny"] = [{"verb": "list", "group": "", "resource": "pods", "namespace": "studio"}]
    kube.write_state(state)
    profile = make_profile({"kubernetes": {"api_url": kube.url, "namespace": "studio"}}, timeout=5)
    _, res = results(profile, "kubernetes")
    r = res["kubernetes.preflight"]
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["identity"].startswith(K.DEFAULT_USER + " (SelfSubjectReview")
    docs = list(yaml.safe_load_all(r.evidence["grants"][0]))
    assert [d["kind"] for d in docs] == ["Role", "RoleBinding"]
    assert docs[0]["metadata"]["namespace"] == "studio"
    assert docs[0]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    assert docs[1]["subjects"] == [{"kind": "ServiceAccount", "name": "studiodoctor", "namespace": "studio"}]
    assert {"kubernetes.pods_ready", "kubernetes.pods_crashing"} <= set(r.evidence["checks_affected"])
    kube.write_state(K.studio_state(hostnames=(HOST,)))
    _, res = results(profile, "kubernetes")
    assert res["kubernetes.preflight"].status is Status.OK, res["kubernetes.preflight"].summary


def test_kubernetes_preflight_asks_for_the_pod_proxy_a_laptop_needs(kube, make_profile):
    """Without app.url/nginx.url the checks reach pods through the API server: get pods/proxy is required
    (a missing one is the Role line to apply); the doctor's services/proxy is asked by name and optional."""
    state = K.studio_state(hostnames=(HOST,))
    state["deny"] = [{"verb": "get", "resource": "pods/proxy", "namespace": "studio"}]
    kube.write_state(state)
    profile = make_profile({"kubernetes": {"api_url": kube.url, "namespace": "studio"}}, timeout=5)
    try:
        _, res = results(profile, "kubernetes")
    finally:
        kube.write_state(K.studio_state(hostnames=(HOST,)))
    r = res["kubernetes.preflight"]
    assert r.status is Status.FAIL, r.summary
    docs = list(yaml.safe_load_all(r.evidence["grants"][0]))
    assert docs[0]["rules"] == [{"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}]
    assert {"app.stealthz", "nginx.reachable", "trace.hops"} <= set(r.evidence["checks_affected"])
    entries = {e["permission"]: e for e in r.evidence["permissions"]}
    assert entries["get services/proxy studiodoctor in studio"]["granted"] is True
    # with both URLs set (the in-cluster profile) the pod proxy is optional: no failure for it
    urls = {"app": {"url": "http://127.0.0.1:1"}, "nginx": {"url": "http://127.0.0.1:1"}}
    kube.write_state(state)
    try:
        _, res = results(make_profile({"kubernetes": {"api_url": kube.url, "namespace": "studio"}, **urls},
                                      timeout=5), "kubernetes")
    finally:
        kube.write_state(K.studio_state(hostnames=(HOST,)))
    assert res["kubernetes.preflight"].status is not Status.FAIL, res["kubernetes.preflight"].summary


def test_kubernetes_preflight_reports_the_port_forward_and_the_doctor_lookup_grants(kube, make_profile):
    """create pods/portforward (Studio's and Traefik's namespaces) is reported, optional (the doctor may be
    asked instead); list services is required where the doctor's Service is found by its label, and the
    missing one is the Role line to apply; naming the Service (kubernetes.doctor.service) makes it optional."""
    state = K.studio_state(hostnames=(HOST,))
    state["deny"] = [{"verb": "create", "resource": "pods/portforward"},
                     {"verb": "list", "resource": "services", "namespace": "studio"}]
    section = {"api_url": kube.url, "namespace": "studio"}
    kube.write_state(state)
    try:
        _, res = results(make_profile({"kubernetes": section}, timeout=5), "kubernetes")
        _, named = results(make_profile({"kubernetes": {**section, "doctor": {"service": "studio/studiodoctor:9842"}}},
                                        timeout=5), "kubernetes")
    finally:
        kube.write_state(K.studio_state(hostnames=(HOST,)))
    r = res["kubernetes.preflight"]
    entries = {e["permission"]: e for e in r.evidence["permissions"]}
    for ns in ("studio", "kube-system"):
        forward = entries[f"create pods/portforward in {ns}"]
        assert forward["granted"] is False and forward["optional"] is True, forward
    assert entries["list services in studio"]["granted"] is False and not entries["list services in studio"]["optional"]
    assert r.status is Status.FAIL, r.summary
    rules = [rule for doc in yaml.safe_load_all(r.evidence["grants"][0]) for rule in doc.get("rules", [])]
    assert {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create"]} in rules, rules
    assert {"apiGroups": [""], "resources": ["services"], "verbs": ["list"]} in rules, rules
    assert named["kubernetes.preflight"].status is not Status.FAIL, named["kubernetes.preflight"].summary


def test_cloudflare_token_verify_and_a_missing_permission(cf, make_profile):
    cf.reset()
    cf.set_deny(["dns_records"])
    profile = make_profile({"cloudflare": cf.profile()["cloudflare"]}, timeout=5)
    try:
        _, res = results(profile, "cloudflare")
    finally:
        cf.reset()
    r = res["cloudflare.preflight"]
    assert r.status is Status.FAIL, r.summary
    assert "active, /user/tokens/verify" in r.evidence["identity"]
    assert [e["permission"] for e in r.evidence["permissions"] if e["granted"] is False] == ["DNS:Read"]
    assert "DNS:Read" in r.evidence["grants"][0] and r.evidence["checks_affected"] == ["cloudflare.dns_records"]
    assert cf.profile()["cloudflare"]["api_token"] not in json.dumps(r.to_dict())


def test_gcs_emulator_without_testiampermissions_is_an_honest_unknown(fake_gcs, make_profile):
    from google.api_core.exceptions import Conflict

    try:
        fake_gcs.client().create_bucket("pf-bucket")
    except Conflict:
        pass
    profile = make_profile({"gcs": {"bucket": "pf-bucket", "endpoint": fake_gcs.url}}, timeout=5)
    _, res = results(profile, "gcs")
    r = res["gcs.preflight"]
    assert r.status is Status.ERROR, r.summary
    assert "anonymous" in r.evidence["identity"] and "testIamPermissions" in r.summary
    assert all(e["granted"] is None for e in r.evidence["permissions"])
    assert {e["permission"] for e in r.evidence["permissions"]} >= {"storage.buckets.get", "storage.objects.list"}


def test_cli_json_exit_code_and_unconfigured_layers_skipped(capsys, tmp_path, monkeypatch, redis_server):
    url = set_user(redis_server, "doctor-read", ["+ping"])
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)
    monkeypatch.setenv("SD_PF_REDIS", url)
    path = tmp_path / "sd.toml"
    path.write_text('default_profile = "t"\n[profiles.t]\ntimeout = 5\n[profiles.t.redis]\nurl = "${SD_PF_REDIS}"\n')
    code = main(["preflight", "--config", str(path), "--layer", "redis", "--layer", "postgres", "--format", "json"])
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert code == 2 and data["command"] == "preflight" and data["exit_code"] == 2
    by_id = {r["id"]: r for r in data["results"]}
    assert by_id["redis.preflight"]["evidence"]["grants"] == ["ACL SETUSER doctor-read +info"]
    assert by_id["postgres.preflight"]["status"] == "skip"
    assert "pf-pw-5" not in out + err
    assert main(["preflight", "--config", str(path), "--layer", "nope"]) == 3
    assert "no preflight for layer 'nope'" in capsys.readouterr().err


def test_a_redis_without_acl_like_production_grants_everything_to_the_password(lab_root, make_profile):
    from studiodoctor.lab.servers.redis_server import RedisServer

    class NoAcl(RedisServer):  # Studio's production Redis is 4.x: no ACL commands at all
        def command(self):
            return super().command() + ["--rename-command", "ACL", ""]

    server = NoAcl(lab_root / "pf-noacl", password="noacl-pw-2").start()
    try:
        _, res = results(make_profile({"redis": {"url": server.url(0)}}, timeout=5), "redis", "celery")
    finally:
        server.stop()
    for r in res.values():
        assert r.status is Status.OK and "no ACL on this server" in r.summary, r.summary


def test_gcs_testiampermissions_through_the_gate_names_the_bindings(fake_gcs, lab_root, make_profile):
    """The lab's gate answers buckets.testIamPermissions as GCS answers the anonymous caller (allUsers holds
    legacyObjectReader): the bucket metadata and the listing are not ours, and preflight names the roles."""
    from google.api_core.exceptions import Conflict

    from studiodoctor.lab.servers.gcs_gate import GCSGate

    try:
        fake_gcs.client().create_bucket("pf-bucket")
    except Conflict:
        pass
    gate = GCSGate(lab_root / "pf-gate", upstream=fake_gcs.url).start()
    try:
        profile = make_profile({"gcs": {"bucket": "pf-bucket", "endpoint": gate.url}}, timeout=5)
        _, res = results(profile, "gcs")
        gate.set_listing_public(True)
        _, res_public = results(profile, "gcs")
    finally:
        gate.stop()
    r = res["gcs.preflight"]
    assert r.status is Status.FAIL, r.summary
    granted = {e["permission"]: e["granted"] for e in r.evidence["permissions"]}
    assert granted == {"storage.buckets.get": False, "storage.objects.list": False,
                       "storage.buckets.getIamPolicy": False}
    assert "gcloud storage buckets add-iam-policy-binding gs://pf-bucket --member=<member> " \
           "--role=roles/storage.objectViewer" in r.evidence["grants"]
    assert {"gcs.bucket", "gcs.databases_cache_control"} <= set(r.evidence["checks_affected"])
    granted = {e["permission"]: e["granted"] for e in res_public["gcs.preflight"].evidence["permissions"]}
    assert granted["storage.objects.list"] is True and granted["storage.buckets.get"] is False
