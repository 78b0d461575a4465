"""Probes: one module per protocol, as blackbox_exporter's ``prober/``, shared by every layer. Each is
bounded by the check's deadline (or an explicit timeout), fills the evidence it measured, and turns its
failures into words in one place (``http.describe_error``, ``tls.classify``, ``Staged.stop``) so a check
never phrases a socket error itself.

- ``http``: an HTTP request with the profile's ``http.resolve``, CA file, User-Agent and redaction, and
  the TLS context every probe shares (``context_for``);
- ``tls``: a certificate read by SNI;
- ``net``: DNS answers and TCP connects;
- ``staged``: the staged connect (DNS -> TCP -> TLS -> auth, each timed, the failed stage named) of the
  layers that speak their own protocol (redis, postgres, the SMTP relay);
- ``saasapi``: one JSON call to a SaaS web API (Sentry, New Relic, Postmark).

May import: ``studiodoctor.model`` and each other. Never the registry, the engine, a backend or a check.
"""
