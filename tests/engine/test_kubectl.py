"""One kubectl command builder: every layer's kubectl lines carry the profile's kubeconfig and context."""

from __future__ import annotations

from studiodoctor import engine
from studiodoctor.backends import kubectl
from studiodoctor.lab.launcher import free_port
from studiodoctor.diagnosis.symptoms import load_catalogue, render_command, template_values

KUBE = {"kubeconfig": "/etc/sd/kubeconfig", "context": "gke_studio-prod", "namespace": "prod-ns"}


def _kubectl_lines(results) -> list[str]:
    return [c.text for r in results for c in r.commands if "kubectl" in c.text]


def test_nginx_app_and_celery_commands_are_bound_to_the_context(make_profile):
    """Before: `kubectl -n studio logs ...` in the nginx and app steps, no --context: the wrong cluster."""
    dead = f"http://127.0.0.1:{free_port()}"
    profile = make_profile({"kubernetes": KUBE, "nginx": {"url": dead}, "app": {"url": dead}}, timeout=3)
    results = engine.check(profile, layers=["nginx", "app"]).results
    lines = _kubectl_lines(results)
    assert lines, [r.summary for r in results]
    for line in lines:
        for piece in line.split("|"):
            if "kubectl" in piece:
                assert "--kubeconfig /etc/sd/kubeconfig --context gke_studio-prod -n prod-ns" in piece, line


def test_builder_and_catalogue_templates_agree(make_profile):
    profile = make_profile({"kubernetes": KUBE})
    assert kubectl.command(profile, "get pods") == \
        "kubectl --kubeconfig /etc/sd/kubeconfig --context gke_studio-prod -n prod-ns get pods"
    assert kubectl.command(profile, "get ingress -A", None).endswith("gke_studio-prod get ingress -A")
    values = template_values(profile)
    for layer in ("kubernetes", "nginx", "app", "celery", "traefik"):
        for cmd in load_catalogue().layer_commands(layer):
            text = render_command(cmd, values).text
            if "kubectl" in text:
                assert text.count("--context gke_studio-prod") == text.count("kubectl "), text
    only_api = make_profile({"kubernetes": {"api_url": "https://10.0.0.1:6443"}})
    assert kubectl.command(only_api, "get pods") == "kubectl --server https://10.0.0.1:6443 -n studio get pods"
