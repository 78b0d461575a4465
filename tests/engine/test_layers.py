"""Layer names a user can type from `studiodoctor list`: a check's layer is its id's prefix, is the name of
the entry point that registers it, and its module lives under that entry point's module."""

from importlib.metadata import entry_points

from studiodoctor.engine import select_checks
from studiodoctor.registry import ENTRY_POINT_GROUP, default_registry


def test_ids_layers_entry_points_and_modules_agree():
    reg = default_registry.load_plugins()
    modules = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for chk in reg.checks.values():
        prefix = chk.id.split(".", 1)[0]
        assert chk.layer == prefix, f"{chk.id} is in layer {chk.layer}"
        assert prefix in modules, f"no entry point named {prefix}"
        module = chk.func.__module__
        assert module == modules[prefix] or module.startswith(modules[prefix] + "."), (chk.id, module)


def test_edge_is_a_layer_and_path_still_selects_the_trace():
    reg = default_registry.load_plugins()
    assert {c.id for c in select_checks(reg, layers=["edge"])} >= {
        "edge.https_redirect", "edge.certificate", "edge.proxied", "edge.error_pages", "edge.cache_status",
        "edge.databases_not_cached"}
    assert not [c for c in select_checks(reg, layers=["cloudflare"]) if c.id.startswith("edge.")]
    assert [c.id for c in select_checks(reg, layers=["path"])] == [c.id for c in select_checks(reg, layers=["trace"])]
