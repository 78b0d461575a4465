"""Prometheus exposition (text format 0.0.4) through ``prometheus_client``.

``studiodoctor_check_status{check,layer,profile}``: the verdict as a number, by severity
(``STATUS_VALUE``); ``studiodoctor_check_duration_seconds``; ``studiodoctor_check_value{...,metric}``
for each declared metric and ``studiodoctor_check_threshold{...,metric,level}`` for its thresholds;
``studiodoctor_run_timestamp_seconds{profile,command}`` and ``studiodoctor_run_status``. The same
collector serves ``--textfile`` (node_exporter), ``--pushgateway`` and ``studiodoctor serve``.
"""

from __future__ import annotations

from datetime import datetime

# the result model's order, worst last: alert on >= 2 (warn or worse) or == 5 (fail)
STATUS_VALUE = {"ok": 0, "skip": 1, "warn": 2, "blocked": 3, "error": 4, "fail": 5}


def _timestamp(data: dict) -> float:
    try:
        return datetime.fromisoformat(data["started_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def families(reports: list[dict]):
    """Metric families for the given reports (one per profile/command, e.g. serve's last results)."""
    from prometheus_client.core import GaugeMetricFamily

    status = GaugeMetricFamily("studiodoctor_check_status",
                               "Verdict of a check: 0 ok, 1 skip, 2 warn, 3 blocked, 4 error, 5 fail",
                               labels=["check", "layer", "profile"])
    duration = GaugeMetricFamily("studiodoctor_check_duration_seconds", "How long the check took",
                                 labels=["check", "layer", "profile"])
    value = GaugeMetricFamily("studiodoctor_check_value", "A numeric evidence value the check declared as a metric "
                              "(unit in the metric label's suffix)", labels=["check", "layer", "profile", "metric"])
    threshold = GaugeMetricFamily("studiodoctor_check_threshold", "The threshold the check compared a metric with",
                                  labels=["check", "layer", "profile", "metric", "level"])
    run_ts = GaugeMetricFamily("studiodoctor_run_timestamp_seconds", "When the run started (Unix time)",
                               labels=["profile", "command"])
    run_status = GaugeMetricFamily("studiodoctor_run_status", "The run's exit code: 0 ok, 1 warn, 2 fail, 3 unknown",
                                   labels=["profile", "command"])
    seen: set[tuple] = set()
    for data in reports:
        profile = str(data.get("profile", ""))
        run_ts.add_metric([profile, data["command"]], _timestamp(data))
        run_status.add_metric([profile, data["command"]], data["exit_code"])
        for r in data["results"]:
            key = (r["id"], profile)
            if key in seen:  # two reports of one profile (smoke + probe): the first given wins
                continue
            seen.add(key)
            labels = [r["id"], r["layer"], profile]
            status.add_metric(labels, STATUS_VALUE.get(r["status"], 4))
            duration.add_metric(labels, r.get("duration_ms", 0.0) / 1000)
            for m in r.get("metrics", []):
                value.add_metric([*labels, m["name"]], m["value"])
                for level in ("warn", "crit"):
                    if m[level] is not None:
                        threshold.add_metric([*labels, m["name"], level], m[level])
    return [status, duration, value, threshold, run_ts, run_status]


class ReportCollector:
    """A prometheus_client collector over a callable returning the reports to expose."""

    def __init__(self, reports):
        self.reports = reports

    def collect(self):
        yield from families(self.reports())


def registry_for(reports):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(reports))
    return registry


def render_prometheus(data: dict, **_) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry_for(lambda: [data])).decode()


def write_textfile(data: dict, directory: str, name: str = "") -> str:
    """Write the metrics for node_exporter's textfile collector atomically; returns the path."""
    import os

    from prometheus_client import write_to_textfile

    if not os.path.isdir(directory):
        raise ValueError(f"--textfile {directory}: not a directory")
    name = name or f"studiodoctor_{data['command']}_{data['profile']}.prom"
    path = os.path.join(directory, name)
    write_to_textfile(path, registry_for(lambda: [data]))  # writes a temp file, then renames it
    return path


def push(data: dict, gateway: str, *, job: str = "studiodoctor", instance: str = "", timeout: float = 10.0) -> None:
    """Push to a Pushgateway, grouped by job and instance (the run's profile by default)."""
    from prometheus_client import push_to_gateway

    grouping = {"instance": instance or str(data["profile"])}
    push_to_gateway(gateway, job=job, registry=registry_for(lambda: [data]), grouping_key=grouping,
                    timeout=timeout)
