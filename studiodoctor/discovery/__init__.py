"""Discovery: what to probe, found on the live deployment instead of assumed (a verdict never rests on a
name of our own lab).

- ``static_assets``: which static file to fetch (the operator's choice, else what the app's pages link);
- ``appdeploy``: the app container of Studio's frontend Deployment (the one whose pods run gunicorn);
- ``channel_databases``: a channel database to probe, from any source of the run (the public channel API,
  the bucket's listing, Studio's tables).

May import: ``studiodoctor.probes``, ``studiodoctor.backends``, ``studiodoctor.model``,
``studiodoctor.studio_facts``. Never the registry, the engine or a check.
"""
