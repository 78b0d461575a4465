"""Diagnosis: from results to what to do.

- ``symptoms``: the symptom catalogue (``data/symptoms.toml`` plus the user's ``[symptoms.*]``) and the
  command templates bound to the profile's real names;
- ``runbook``: a symptom's walk over the results, ordered, with the likely cause;
- ``causes``: the causal rules that link a failure to a deeper layer's evidence;
- ``baseline``: the evidence of the last good run and what changed since (``--since-good``);
- ``locality``: "is it me?", when this machine's own network explains the failures;
- ``watch``: ``diagnose --watch``, runs until recovered and the incident's timeline.

May import: ``studiodoctor.model``, ``studiodoctor.registry``, ``studiodoctor.secrets``, ``studiodoctor.studio_facts``,
``studiodoctor.render`` (the watch's live view), ``studiodoctor.backends.kubectl`` (command templates).
Never the engine, the runner or a command.
"""
