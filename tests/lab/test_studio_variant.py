"""The studio lab variant: Studio's own backend (its gunicorn app, Celery worker, docker/nginx config, migrated
schema and `manage.py setup` data) in the lab, healthy without false alarms, and its faults, made with
Studio's own machinery, localized by the diagnosis. Skips, saying so, without Studio's source tree."""

from __future__ import annotations

import urllib.request

import pytest

from conftest import whole_lab
from studiodoctor.lab import drill
from studiodoctor.lab.faults import FAULTS


@pytest.fixture(scope="module")
def studio_lab(tmp_path_factory, studio_src, studio_python):
    yield from whole_lab(tmp_path_factory, "studio-lab", variant="studio")


def _get(url: str, ua: str = "Studio-Internal-Prober") -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"User-Agent": ua})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read().decode(errors="replace")


def test_studios_own_app_answers_through_its_own_nginx(studio_lab):
    nginx = studio_lab["studio-nginx"].url
    assert _get(f"{nginx}/stealthz") == (200, "<3")
    names = [r[0] for r in studio_lab["postgres"].execute("SELECT name FROM contentcuration_channel ORDER BY id")]
    assert _get(f"{nginx}/healthz") == (200, names[0])   # Channel.objects.first(), as Studio's view answers
    status, page = _get(f"{nginx}/en/accounts/", ua="Mozilla/5.0 Chrome/120")
    assert status == 200 and "accounts.js" in page      # rendered through django-webpack-loader
    # `manage.py setup` published a channel: its database is in the bucket, served by Studio's nginx config
    public = studio_lab["postgres"].execute("SELECT id FROM contentcuration_channel WHERE public AND NOT deleted")
    status, _ = _get(f"{nginx}/content/databases/{public[0][0]}.sqlite3")
    assert status == 200


def test_healthy_studio_lab_has_no_false_alarm(studio_lab):
    alarms = drill.false_alarms()
    assert alarms == [], alarms


def test_stand_in_switches_are_not_drilled_on_studios_own_code(studio_lab):
    assert "Studio's own code runs here" in drill.skipped(studio_lab, "app-slow")
    assert drill.skipped(studio_lab, "publish-worker-killed") == ""


# CI drills every fault made with Studio's machinery, and one or more per layer of the generic ones
# (`lab drill --all --variant studio` drills them all)
GENERIC = ("app-stopped", "nginx-stopped", "redis-down", "redis-full", "postgres-down", "worker-stopped",
           "private-content", "cacheable-database", "traefik-server-down", "pod-crashloop", "edge-522")


@pytest.mark.parametrize("fault", [f.name for f in FAULTS.values() if f.needs_studio] + list(GENERIC))
def test_fault_is_localized_and_fixed_on_studios_own_code(studio_lab, fault):
    results = drill.drill_fault(studio_lab, FAULTS[fault])
    for r in results:
        assert r.localized, f"{fault}/{r.symptom}: named {r.named} ({r.check}), expected {r.expected}"
        assert r.healthy_after, f"{fault}: still failing after the fix: {r.problems}"


def test_a_real_enqueue_carries_the_signature_the_check_computes(studio_lab):
    """The lost-message finding recognizes Studio's apply task by its signature: computed by us, written by
    Studio's CeleryTask.enqueue. A Studio upgrade that changes the recipe turns this red."""
    from checks.celery.publish_state import apply_signature
    from studiodoctor.lab import studio_faults

    channel = studio_faults.publish_channel(studio_lab)
    studio_faults._wait_changes_applied(studio_lab)
    rows = studio_lab["postgres"].execute("SELECT signature FROM contentcuration_customtaskmetadata "
                                          "WHERE replace(channel_id::text, '-', '') = %s", (channel,))
    assert apply_signature(channel) in {r[0] for r in rows}
