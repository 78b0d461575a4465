"""The HTML page in a real browser: Debian's Chromium driven by Playwright (the system browser, no browser
download), against the whole lab — healthy, then with Studio's internal nginx stopped.

Asserts on the DOM as a reader sees it (the broken part's box says FAIL in words, the trace marks the
nginx hop as the first bad one), that opening the page asks nothing of the network, that it works with
scripts off, prints, and fits a phone. Screenshots are kept in ``test-artifacts/browser/`` (gitignored;
CI keeps it as its artifacts; ``STUDIODOCTOR_ARTIFACTS`` moves it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import whole_lab
from studiodoctor.cli import main
from studiodoctor.lab.faults import set_fault
from studiodoctor.lab.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("STUDIODOCTOR_ARTIFACTS") or ROOT / "test-artifacts") / "browser"
CHROMIUM = os.environ.get("STUDIODOCTOR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _absent(why: str):
    """Skip with the reason on a developer's machine; under CI the browser is part of the deal: fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}; scripts/bootstrap.sh installs it (CI must run the browser tests)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _absent("Playwright for Python is not installed (pip install playwright; no browser download needed)")
    if not CHROMIUM:
        _absent("no system Chromium (apt-get install chromium, or set STUDIODOCTOR_CHROMIUM)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", params=list(VARIANTS))
def lab(tmp_path_factory, request):
    """The whole lab, once per variant (Traefik, then ingress-nginx with other names): the page must tell
    the same story on both."""
    yield from whole_lab(tmp_path_factory, f"browserlab-{request.param}", request.param)


def write_page(lab, name: str, argv: list[str], capsys) -> Path:
    main([*argv, "--profile", "lab", "--format", "html"])
    path = ARTIFACTS / f"{lab.variant.name}-{name}.html"
    path.write_text(capsys.readouterr().out)
    return path


def open_page(browser, path: Path, *, width=1200, height=900, scripts=True):
    """(page, requests): every request the page made, and console errors (a CSP refusal is one)."""
    context = browser.new_context(viewport={"width": width, "height": height}, java_script_enabled=scripts)
    requests, errors = [], []
    context.on("request", lambda r: requests.append(r.url))
    context.route("**/*", lambda route: route.continue_() if route.request.url == path.as_uri() else route.abort())
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors


def box(page, key: str):
    return page.locator(f'details.box[data-box="{key}"]')


def alarms(page) -> list[tuple[str, str, str]]:
    """(check id, status, its summary line as the page shows it) of every check the page does not call ok or
    skip: what a failing assertion on a healthy page must print (the page alone says which check and why)."""
    return [tuple(x) for x in page.eval_on_selector_all(
        "details.check", "els => els.filter(e => !['ok', 'skip'].includes(e.dataset.status))"
                         ".map(e => [e.dataset.check, e.dataset.status, e.querySelector('summary').textContent.trim()])")]


def test_healthy_lab_page(lab, browser, capsys):
    path = write_page(lab, "healthy", ["check"], capsys)
    page, requests, errors = open_page(browser, path)
    assert requests == [path.as_uri()] and errors == []         # nothing fetched; the script passed the CSP
    statuses = page.eval_on_selector_all("details.box", "els => els.map(e => [e.dataset.box, e.dataset.status])")
    assert dict(statuses)["nginx"] == "ok" and dict(statuses)["app"] == "ok", (statuses, alarms(page))
    assert not [b for b, s in statuses if s in ("fail", "error", "blocked")], (statuses, alarms(page))
    assert page.locator(".hop[data-first-bad=true]").count() == 0
    assert page.locator('.hop[data-verdict="ok"]').count() == 4    # edge, origin, nginx, app all answer
    assert "✔ OK" in box(page, "nginx").locator(":scope > summary").inner_text()
    causes = page.locator("section.causes")
    assert causes.locator("h2").inner_text() == "Nothing is wrong", \
        f"the page named a cause: {causes.inner_text()[:600]!r}; checks not ok: {alarms(page)}"
    ingress = box(page, "ingress").locator(":scope > summary .name").inner_text()
    assert ingress == ("Traefik" if lab.variant.ingress == "traefik" else "Ingress: ingress-nginx")
    page.screenshot(path=str(ARTIFACTS / f"{lab.variant.name}-healthy-desktop.png"), full_page=True)
    page.context.close()


def test_broken_lab_page_marks_the_box_and_the_hop(lab, browser, capsys):
    set_fault(lab, "nginx-stopped", True)
    try:
        path = write_page(lab, "nginx-stopped", ["diagnose", "502"], capsys)
    finally:
        set_fault(lab, "nginx-stopped", False)
    page, requests, errors = open_page(browser, path)
    assert requests == [path.as_uri()] and errors == []
    nginx = box(page, "nginx")
    assert nginx.get_attribute("data-status") == "fail"
    summary = nginx.locator(":scope > summary").inner_text()
    assert "✖ FAIL" in summary and "likely cause" in summary      # in words and symbols, not color alone
    assert page.locator("[data-cause]").first.get_attribute("data-cause").startswith("nginx.")
    first = page.locator(".hop[data-first-bad=true]")
    assert first.count() == 1 and first.get_attribute("data-hop") == "nginx"
    assert "first bad hop" in first.inner_text() and first.get_attribute("data-verdict") == "bad"
    nginx.locator(":scope > summary").click()                              # a box opens to its checks
    check = nginx.locator('[data-check="nginx.reachable"]')
    assert check.is_visible() and "FAIL" in check.inner_text() and "seen from this machine" in check.inner_text()
    copy = page.locator("ol.runbook button.copy").first   # the runbook is never folded
    assert copy.is_visible()                                      # the script ran (its hash is in the CSP)
    page.screenshot(path=str(ARTIFACTS / f"{lab.variant.name}-nginx-stopped-desktop.png"), full_page=True)
    page.emulate_media(media="print")
    assert not copy.is_visible()
    page.screenshot(path=str(ARTIFACTS / f"{lab.variant.name}-nginx-stopped-print.png"), full_page=True)
    page.context.close()

    phone, _, _ = open_page(browser, path, width=390, height=844)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390   # no sideways scrolling
    assert box(phone, "nginx").bounding_box()["width"] <= 390
    phone.screenshot(path=str(ARTIFACTS / f"{lab.variant.name}-nginx-stopped-phone.png"), full_page=True)
    phone.context.close()

    bare, requests, _ = open_page(browser, path, scripts=False)
    assert requests == [path.as_uri()]
    assert bare.locator("ol.runbook pre.cmd code").first.is_visible()
    assert not bare.locator("ol.runbook button.copy").first.is_visible()       # no script: no buttons, the rest the same
    box(bare, "nginx").locator(":scope > summary").click()                   # details/summary need no script
    assert bare.locator('[data-check="nginx.reachable"]').is_visible()
    bare.context.close()
