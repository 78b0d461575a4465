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


def test_state_files_written_back_to_back_always_look_changed(tmp_path):
    from studiodoctor.lab.launcher import write_json_atomic

    path = tmp_path / "state.json"
    seen = []
    for i in range(50):
        write_json_atomic(path, {"i": i})
        seen.append(path.stat().st_mtime_ns)
    assert all(b > a for a, b in zip(seen, seen[1:]))
    assert path.read_text().count('"i": 49') == 1


def test_nginx_fault_flips_are_served_as_soon_as_set_fault_returns(tmp_path):
    """No settling time: the first request after each flip sees the new configuration, and no worker
    of the previous configuration still accepts connections."""
    import httpx

    from studiodoctor.lab.servers import nginx_server
    from studiodoctor.lab.servers.studio_nginx import StudioNginx

    def listening_workers(nginx):
        inodes = nginx_server._listening_inodes(nginx.listen_ports())
        return {pid for pid in nginx_server._children(nginx.pid) if nginx_server._holds_any(pid, inodes)}

    nginx = StudioNginx(tmp_path, app_port=9, gcs_url="http://127.0.0.1:9").start()
    try:
        for on in (True, False) * 6:
            before = listening_workers(nginx)
            assert before
            nginx.set_fault("post_allowed", on)
            # refused by limit_except (403) or let through to the dead bucket (502)
            status = httpx.post(f"{nginx.url}/content/storage/a/b/c.mp4", content=b"x").status_code
            assert status == (502 if on else 403)
            assert nginx.served_generation() == nginx.generation
            assert before.isdisjoint(listening_workers(nginx))
    finally:
        nginx.stop()


def test_unknown_lab_variant_is_one_line_naming_the_known_ones(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIODOCTOR_LAB_DIR", str(tmp_path / "none"))
    assert main(["lab", "up", "--variant", "nope"]) == 3
    assert capsys.readouterr().err == "studiodoctor: unknown lab variant 'nope' (known: default, other, studio)\n"
    assert not (tmp_path / "none").exists()


def test_listening_sockets_are_the_kernels_listeners_and_only_those(tmp_path):
    """The relay's and nginx's reader of listeners (netlink sock_diag) sees what the whole TCP table shows
    listening, IPv4 and IPv6, with the same inodes; an established connection is not a listener."""
    import os
    import socket

    from studiodoctor.lab.launcher import listening_sockets, tcp_sockets

    v4 = socket.create_server(("127.0.0.1", 0))
    try:
        v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:  # no IPv6 loopback here
        v6 = None
    client = socket.create_connection(v4.getsockname()[:2])
    try:
        mine = {s.getsockname()[1]: str(os.fstat(s.fileno()).st_ino) for s in (v4, v6) if s}
        seen = listening_sockets()
        for port, inode in mine.items():
            assert (port, inode) in seen, (port, inode, sorted(seen))
        assert client.getsockname()[1] not in {port for port, _ in seen}
        table = {(local, inode) for local, _remote, state, inode in tcp_sockets() if state == "0A"}
        assert set(mine.items()) <= table  # the table agrees (what a fallback would read)
    finally:
        client.close()
        v4.close()
        if v6:
            v6.close()
    assert not set(mine.items()) & listening_sockets()
