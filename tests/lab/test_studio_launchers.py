"""The Studio app and nginx launchers rebuilt from their state (as `lab break`/`lab down` do from another
process) still flip faults on the running servers and stop them."""

from __future__ import annotations

import httpx

from studiodoctor.lab.launcher import pid_alive
from studiodoctor.lab.servers.studio_app import StudioApp
from studiodoctor.lab.servers.studio_nginx import StudioNginx


def test_launchers_rebuilt_from_state_apply_faults_and_stop(tmp_path):
    app = StudioApp(tmp_path).start()
    nginx = StudioNginx(tmp_path, app_port=app.port, gcs_url="http://127.0.0.1:9", proxy_read_timeout=100)
    try:
        nginx.start()
        assert httpx.get(f"{nginx.url}/stealthz").text == "<3"
        app2 = StudioApp.from_state(app.to_state())
        nginx2 = StudioNginx.from_state(nginx.to_state())
        assert (app2.pid, nginx2.pid, nginx2.app_port) == (app.pid, nginx.pid, app.port)

        app2.set_fault(error=True)
        assert httpx.get(f"{app.url}/stealthz").status_code == 500
        nginx2.set_fault("post_allowed")
        assert "post_allowed" in StudioNginx.from_state(nginx2.to_state()).faults
        assert "limit_except" not in nginx2.conf.read_text()
        nginx2.set_timeout(60)
        assert "proxy_read_timeout 60s;" in nginx2.conf.read_text()
        app2.clear_faults()
        nginx2.clear_faults()
        assert httpx.get(f"{nginx.url}/stealthz").status_code == 200
        assert "limit_except GET HEAD OPTIONS" in nginx2.conf.read_text()

        nginx2.stop()
        app2.stop()
        assert not pid_alive(nginx.pid) and not pid_alive(app.pid)
    finally:
        nginx.stop()
        app.stop()
