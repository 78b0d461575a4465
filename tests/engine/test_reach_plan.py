"""`config show` says how each layer will be reached (studiodoctor.discovery.ways), from the profile alone."""

from __future__ import annotations

import json

from studiodoctor.cli import main
from studiodoctor.discovery import reach, ways
from studiodoctor.runner import PER_BACKEND


def test_the_proxy_fan_out_keeps_the_runners_per_backend_cap():
    assert reach.IN_FLIGHT == PER_BACKEND


def _plan(make_profile, sections):
    return {w.layer: w for w in ways.reach_plan(make_profile(sections))}


def test_a_laptop_reaches_app_and_nginx_through_the_api_server(make_profile, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    plan = _plan(make_profile, {"kubernetes": {"kubeconfig": str(kubeconfig), "namespace": "studio"},
                                "redis": {"url": ""}, "postgres": {"dsn": ""}})
    assert plan["app"].how == plan["nginx"].how == "api-proxy"
    assert "namespace studio" in plan["app"].detail and str(kubeconfig) in plan["app"].detail
    assert plan["trace"].detail.endswith("nginx: api-proxy, app: api-proxy")
    assert plan["redis"].how == "cluster-doctor" and "through the API server's service proxy" in plan["redis"].detail
    # with no doctor deployed, a port-forward for the run: said after it, with the grant it needs
    assert "; else a port-forward to the pod that runs Redis" in plan["redis"].detail, plan["redis"].detail
    assert "create pods/portforward" in plan["traefik"].detail, plan["traefik"].detail
    # PostgreSQL's needs the database's credentials: without postgres.port_forward_dsn it is not offered
    assert "port-forward" not in plan["postgres"].detail, plan["postgres"].detail
    with_dsn = _plan(make_profile, {"kubernetes": {"kubeconfig": str(kubeconfig), "namespace": "studio"},
                                    "postgres": {"dsn": "", "port_forward_dsn": "postgresql://u:pw@/db"}})
    assert "else a port-forward to the pod that runs the Cloud SQL proxy" in with_dsn["postgres"].detail
    assert "postgres.port_forward_dsn" in with_dsn["postgres"].detail and "pw" not in with_dsn["postgres"].detail


def test_urls_keep_priority_and_no_kubeconfig_says_what_would_open_a_way(make_profile, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    plan = _plan(make_profile, {"app": {"url": "http://127.0.0.1:8081"}, "kubernetes": {"kubeconfig": ""}})
    assert (plan["app"].how, plan["app"].detail) == ("direct", "app.url = http://127.0.0.1:8081")
    assert plan["nginx"].how == "unreachable"
    assert plan["nginx"].detail == ("nginx.url not set; a kubeconfig (kubernetes.kubeconfig, $KUBECONFIG or "
                                    "~/.kube/config) with get pods/proxy would open a way")
    assert plan["postgres"].how == "unreachable" and "in-cluster doctor" in plan["postgres"].detail


def test_config_show_prints_the_plan_without_secrets(tmp_path, monkeypatch, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[profiles.t]\n[profiles.t.redis]\nurl = "redis://:hunter2pass@10.0.0.5:6379/0"\n'
                      '[profiles.t.kubernetes]\napi_url = "https://k8s.example:443"\ntoken = "tok-secret-77"\n')
    assert main(["config", "show", "--config", str(config), "--profile", "t", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reach"]["nginx"]["how"] == "api-proxy"
    assert data["reach"]["redis"]["how"] == "direct"
    assert main(["config", "show", "--config", str(config), "--profile", "t"]) == 0
    out = capsys.readouterr().out
    assert "# how each layer will be reached from here" in out
    assert "hunter2pass" not in out and "tok-secret-77" not in out


def test_a_pod_behind_the_api_server_is_its_own_sampling_backend():
    """--samples bounds each pod as it would bound it reached directly; the API server only relays."""
    from studiodoctor.probes.sampling import backend_of

    api = "https://10.0.0.1:443/api/v1/namespaces/studio/pods/"
    assert backend_of(api + "web-0:8081/proxy/healthz") == "pod web-0:8081 in studio"
    assert backend_of(api + "web-1:8081/proxy/healthz") != backend_of(api + "web-0:8081/proxy/healthz")
    assert backend_of("http://127.0.0.1:8081/healthz") == "127.0.0.1:8081"
