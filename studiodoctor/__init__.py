"""studiodoctor: the on-call engineer's doctor for Kolibri Studio's production stack.

The engine by role (docs/architecture.md tells the whole path; each package's docstring says what may
import what). Imports go one way: commands -> engine -> probes/backends -> model.

- the core, here: ``model`` (results), ``metrics``, ``secrets`` (redaction), ``studio_facts``,
  ``config`` (profiles), ``context`` (what a check gets), ``registry`` (the checks), ``runner``
  (concurrent runs), ``engine`` (choose, run, report), ``smoke`` (the budgeted run with hysteresis),
  ``report`` (the document and exit codes), ``cli`` (the command line);
- ``probes/`` one module per protocol; ``backends/`` one connection module per backend;
  ``parsers/`` readers of the stack's languages; ``discovery/`` what to probe, found live;
- ``diagnosis/`` symptoms, runbooks, causal rules, baselines; ``preflight/`` who we are on each backend
  and what we may do; ``render/`` one module per output format; ``commands/`` the command families;
- ``lab/`` the optional lab, which the engine never imports; the layers' checks live in ``checks/``.
"""

__version__ = "0.1.0"
