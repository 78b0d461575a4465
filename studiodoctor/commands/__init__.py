"""Commands: one module per command family of the command line, each a thin face over the engine. Each
module has its own ``app`` (a ``typer.Typer``) that ``studiodoctor/cli.py`` merges into the root command.

- ``run``: ``check``, ``diagnose``, ``smoke`` (progress, the Prometheus side outputs, the baseline);
- ``serve``: the Prometheus exporter (``/metrics`` of a background smoke loop, ``/probe`` on demand);
- ``preflight``: who we are on each backend (``studiodoctor.preflight``);
- ``catalogue``: ``list``, ``explain``, ``symptoms``;
- ``config``: ``config show``, ``config validate``;
- ``common``: what they share (the options, ``CliError``, the checks of option values, ``emit``).

May import: anything of the engine (``engine``, ``smoke``, ``preflight``, ``diagnosis``, ``render``,
``config``, ...), heavy parts only inside a command (``studiodoctor --help`` imports every module here).
Nothing below imports a command; plugins add commands through the entry-point group
``studiodoctor.commands``.
"""
