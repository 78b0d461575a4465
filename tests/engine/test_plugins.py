"""The entry points of our groups are read once and cached on disk: the cache says what importlib.metadata
says, and installing a distribution (a new metadata directory on the path) is seen at the next start."""

import sys
from importlib.metadata import entry_points as metadata_entry_points

import pytest

from studiodoctor import plugins


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plugins.forget()
    yield tmp_path
    plugins.forget()


def _as_pairs(eps):
    return sorted((ep.name, ep.value) for ep in eps)


def test_the_cache_says_what_importlib_metadata_says(fresh_cache):
    for group in plugins.GROUPS:
        assert _as_pairs(plugins.entry_points(group)) == _as_pairs(metadata_entry_points(group=group)), group
    assert plugins.cache_file().is_file()
    plugins.forget()  # a new process: read from the file this time
    for group in plugins.GROUPS:
        assert _as_pairs(plugins.entry_points(group)) == _as_pairs(metadata_entry_points(group=group)), group
    assert plugins.entry_points("studiodoctor.profiles")[0].load() is not None


def test_a_distribution_installed_since_is_seen(fresh_cache, monkeypatch):
    before = _as_pairs(plugins.entry_points("studiodoctor.profiles"))
    site = fresh_cache / "site"
    dist = site / "extra_profiles-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-profiles\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[studiodoctor.profiles]\nextra = json:loads\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    plugins.forget()
    after = _as_pairs(plugins.entry_points("studiodoctor.profiles"))
    assert after == sorted([*before, ("extra", "json:loads")])
    (dist / "entry_points.txt").write_text("[studiodoctor.profiles]\nother = json:dumps\n")  # upgraded in place
    plugins.forget()
    assert ("other", "json:dumps") in _as_pairs(plugins.entry_points("studiodoctor.profiles"))
