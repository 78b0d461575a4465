"""docs/architecture.md names modules by path; each must exist, so the page cannot silently go stale."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
NAMED = re.compile(r"`((?:studiodoctor|checks|tests|deploy|benchmarks)/[\w/.]*)`")


def named_paths() -> list[str]:
    return sorted(set(NAMED.findall(DOC.read_text())))


def test_the_page_names_the_modules_of_both_paths():
    names = named_paths()
    assert "studiodoctor/cli.py" in names and "studiodoctor/diagnosis/runbook.py" in names
    assert len(names) >= 25


def test_every_module_the_page_names_exists():
    missing = [name for name in named_paths() if not (ROOT / name).exists()]
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"


def test_the_check_finds_a_missing_module(tmp_path):
    assert not (ROOT / "studiodoctor/no_such_module.py").exists()
    assert NAMED.findall("see `studiodoctor/no_such_module.py`") == ["studiodoctor/no_such_module.py"]
