"""Commands: one module per command family of the command line, each a thin face over the engine.

- ``serve``: the Prometheus exporter (``/metrics`` of a background smoke loop, ``/probe`` on demand).

May import: anything of the engine (``engine``, ``smoke``, ``preflight``, ``diagnosis``, ``render``,
``config``, ...). Nothing below imports a command; plugins add commands through the entry-point group
``studiodoctor.commands``.
"""
