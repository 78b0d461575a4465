"""``studiodoctor preflight``: before a run, who we are on each configured backend, what the checks need
(their own ``permissions=`` declarations, the source ``deploy/`` and ``studiodoctor.preflight.rbac`` use), what is
granted, which checks cannot work without the rest, and the exact grant to add.

One result per backend, run by the engine like checks (same deadlines, formats and exit codes):
``ok`` everything granted, ``fail`` something missing (the checks named will answer `error`),
``warn`` only optional permissions missing, ``error`` we could not tell (and why), ``skip`` not configured.

How each backend is asked, reading only:

- Redis: ``ACL WHOAMI``; ``ACL DRYRUN <user> <command> <key>`` per ACL rule when we may (Redis >= 7);
  else read commands are tried as the checks send them (PING, INFO, LLEN celery...), and the broadcast's
  writes are left `unknown` (trying them would write) with the DRYRUN line an admin can run.
- PostgreSQL: ``current_user``, its role memberships, ``pg_has_role(.., 'pg_monitor', 'member')``,
  ``has_table_privilege(.., 'SELECT')``.
- Kubernetes: SelfSubjectReview (``kubectl auth whoami``) and one SelfSubjectAccessReview per grant of
  ``studiodoctor.preflight.rbac.needed_grants`` (both POSTs the API server answers and never stores).
- GCS: the credentials' service account and the bucket's ``testIamPermissions``.
- CloudFlare: ``/user/tokens/verify``, the token's permission groups (``/user/tokens/<id>``) when the token
  may read them, else one GET per declared permission (403 = not granted).

Lives here: one module per backend (``redis`` with the Celery broker, ``postgres``, ``kubernetes``,
``gcs``, ``cloudflare``), what they share (``common``: the registry of preflight checks, the declared
permissions, the verdict), ``rbac`` (the least-privilege Role built from the same declarations, for
``deploy/``) and ``run`` below. May import: the engine, the runner, the registry, ``backends``,
``probes`` and the model; never a command.
"""

from __future__ import annotations

from ..registry import default_registry
from .common import PREFLIGHT

# one module per backend, as checks/ is: importing them registers their preflight checks, in this order
from . import redis, postgres, kubernetes, gcs, cloudflare  # noqa: F401  isort: skip


def run(profile, layers=(), *, timeout=None):
    """Run the preflight of every backend (or of ``layers``); a Report like ``check``'s."""
    from .. import engine, runner

    chosen = [c for c in PREFLIGHT.checks.values() if not layers or c.layer in layers]
    real = default_registry.load_plugins()
    runner.preload([c for c in real.checks.values() if c.layer in {x.layer for x in chosen}])
    report = engine.run(profile, chosen, command="preflight", timeout=timeout)
    return report
