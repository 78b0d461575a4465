"""The check registry: checks are small functions registered by decorator (Django's model).

Built-in layers are plugins too: each module in ``checks/`` is listed in the entry-point group
``studiodoctor.checks`` and registers its checks into ``default_registry`` when imported.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .metrics import MetricSpec, MetricSpecError
from .model import READ_ONLY, SAFETY_CLASSES, Result

ENTRY_POINT_GROUP = "studiodoctor.checks"
_ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$")


class RegistryError(Exception):
    """A check was declared wrongly (a bug in the layer module, caught at registration)."""


@dataclass(frozen=True)
class Check:
    """A registered check and its metadata; ``doc`` is what ``explain`` prints."""

    id: str
    title: str
    func: Callable
    layer: str = ""
    needs: tuple[str, ...] = ()          # config keys, "layer.key"; empty value => skip naming it
    permissions: tuple[str, ...] = ()    # what our credentials must be allowed to do
    safety: str = READ_ONLY
    depends_on: tuple[str, ...] = ()     # check ids; a broken one makes this check `blocked`
    explained_by: tuple[str, ...] = ()   # check ids or layer names whose failure explains this one's
    doc: str = ""
    smoke: bool = False                  # cheap and read-only: run by `studiodoctor smoke`
    metrics: tuple[MetricSpec, ...] = () # numeric evidence with thresholds (see studiodoctor.metrics)
    # the symptoms (catalogue names) a failure of this check can produce; None: any symptom whose walk
    # runs it; (): none a user reports (an exposure). A failure that cannot produce the diagnosed symptom
    # is never its cause: the runbook lists it as "also failing, not the cause of this symptom".
    produces: tuple[str, ...] | None = None

    def __post_init__(self):
        if not _ID.match(self.id):
            raise RegistryError(f"check id {self.id!r} is not of the form layer.name")
        if not self.layer:
            object.__setattr__(self, "layer", self.id.split(".", 1)[0])
        if self.safety not in SAFETY_CLASSES:
            raise RegistryError(f"{self.id}: unknown safety class {self.safety!r}")
        params = inspect.signature(self.func).parameters.values()
        if len([p for p in params if p.default is inspect.Parameter.empty]) != 1:
            raise RegistryError(f"{self.id}: a check function takes exactly one argument (the context)")
        if not self.doc:
            object.__setattr__(self, "doc", inspect.cleandoc(self.func.__doc__ or ""))
        if isinstance(self.metrics, str):
            raise RegistryError(f"{self.id}: metrics must be a tuple of strings, not one string")
        try:
            object.__setattr__(self, "metrics", tuple(m if isinstance(m, MetricSpec) else MetricSpec.parse(m)
                                                      for m in self.metrics))
        except MetricSpecError as exc:
            raise RegistryError(f"{self.id}: {exc}") from None
        if isinstance(self.produces, str):
            raise RegistryError(f"{self.id}: produces must be a tuple of symptom names, not one string")
        if self.smoke and self.safety != READ_ONLY:
            raise RegistryError(f"{self.id}: a smoke check must be read-only")

    def __call__(self, ctx) -> Result:
        return self.func(ctx)


@dataclass
class Registry:
    checks: dict[str, Check] = field(default_factory=dict)
    loaded: bool = False

    def register(self, chk: Check) -> Check:
        if chk.id in self.checks and self.checks[chk.id].func is not chk.func:
            raise RegistryError(f"check id {chk.id!r} is registered twice")
        self.checks[chk.id] = chk
        return chk

    def check(self, id: str, *, title: str, layer: str = "", needs: Iterable[str] = (),
              permissions: Iterable[str] = (), safety: str = READ_ONLY,
              depends_on: Iterable[str] = (), explained_by: Iterable[str] = (), smoke: bool = False,
              metrics: Iterable[str] = (), produces: Iterable[str] | None = None):
        """Decorator: register ``func`` as check ``id``."""

        def decorate(func):
            self.register(Check(id=id, title=title, func=func, layer=layer, needs=tuple(needs),
                                permissions=tuple(permissions), safety=safety,
                                depends_on=tuple(depends_on), explained_by=tuple(explained_by),
                                smoke=smoke, metrics=metrics if isinstance(metrics, str) else tuple(metrics),
                                produces=produces if produces is None or isinstance(produces, str)
                                else tuple(produces)))
            return func

        return decorate

    def load_plugins(self) -> "Registry":
        """Import every module of the entry-point group (built-in layers included)."""
        if self is default_registry and not self.loaded:
            from importlib import import_module
            from .plugins import entry_points

            eps = entry_points(group=ENTRY_POINT_GROUP)
            if not eps:
                raise RegistryError("no check layers found: is studiodoctor installed? (pip install -e .)")
            for ep in sorted(eps, key=lambda e: e.name):
                import_module(ep.value.split(":", 1)[0])
            self.loaded = True
        return self

    def get(self, id: str) -> Check:
        return self.checks[id]

    def layers(self) -> list[str]:
        return sorted({c.layer for c in self.checks.values()})

    def for_layers(self, layers: Iterable[str]) -> list[Check]:
        wanted = set(layers)
        return [c for c in self.checks.values() if c.layer in wanted]

    def with_dependencies(self, chosen: Iterable[Check]) -> list[Check]:
        """``chosen`` plus everything they depend on, transitively, in registration order."""
        ids: set[str] = set()
        stack = [c.id for c in chosen]
        while stack:
            cid = stack.pop()
            if cid in ids or cid not in self.checks:
                continue
            ids.add(cid)
            stack.extend(self.checks[cid].depends_on)
        return [c for c in self.checks.values() if c.id in ids]


default_registry = Registry()
check = default_registry.check
