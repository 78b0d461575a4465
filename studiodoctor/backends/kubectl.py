"""The one builder of kubectl command lines: every layer's commands and the runbook's templates are bound
to the profile's kubeconfig, context and namespace, so a line pasted at 3 a.m. hits the right cluster."""

from __future__ import annotations

from typing import Any

DEFAULT_NAMESPACE = "studio"


def _value(profile: Any, key: str) -> str:
    value = profile.value(f"kubernetes.{key}") if profile is not None else None
    return str(value) if value else ""


def flags(profile: Any) -> str:
    """``--kubeconfig K --context C`` as configured; ``--server URL`` when only ``kubernetes.api_url`` is."""
    out = []
    if _value(profile, "kubeconfig"):
        out.append(f"--kubeconfig {_value(profile, 'kubeconfig')}")
    if _value(profile, "context"):
        out.append(f"--context {_value(profile, 'context')}")
    if not out and _value(profile, "api_url"):
        out.append(f"--server {_value(profile, 'api_url')}")
    return " ".join(out)


def namespace(profile: Any) -> str:
    return _value(profile, "namespace") or DEFAULT_NAMESPACE


def command(profile: Any, args: str, ns: str | None = "") -> str:
    """``kubectl <flags> -n <ns> <args>``; ``ns=""`` is the profile's namespace, ``None`` no namespace
    (cluster-scoped commands, or ``-A`` in ``args``)."""
    parts = ["kubectl"]
    if flags(profile):
        parts.append(flags(profile))
    if ns is not None:
        parts.append(f"-n {ns or namespace(profile)}")
    return " ".join(parts + [args])
