"""Launcher basics shared by every lab server."""

import pytest

from studiodoctor.cli import main
from studiodoctor.lab.launcher import LabError, require_binary


def test_missing_system_package_is_one_line_naming_the_install(capsys, monkeypatch):
    with pytest.raises(LabError, match=r"^no-such-server not found: install it with `apt-get install -y pkg-x`$"):
        require_binary("no-such-server", "pkg-x")


def test_lab_commands_need_a_lab_that_is_up(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIODOCTOR_LAB_DIR", str(tmp_path / "none"))
    assert main(["lab", "break", "app-stopped"]) == 3
    assert capsys.readouterr().err == "studiodoctor: the lab is down: run `studiodoctor lab up` first\n"
    assert main(["lab", "status"]) == 1
    assert "lab is down" in capsys.readouterr().out
