"""End to end: `dicekit app` on a free loopback port, driven in real headless Chromium (Playwright).

Needs Debian's chromium at /usr/bin/chromium (or $DICEKIT_CHROMIUM) and the playwright package;
skipped without them. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.app.runfolder import XSS, make_run_folder

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("DICEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.timeout(240),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`dicekit app RUN --port P` on the fixture run folder; yields its printed URL."""
    pytest.importorskip("streamlit")
    from dicekit.commands.app import free_port

    run = make_run_folder(tmp_path_factory.mktemp("run"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dicekit", "app", str(run), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert match and int(match.group(1)) == port, first
        url = match.group(0)
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "the dashboard did not come up in 90 s"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pair_line(page) -> str:
    return next(t for t in page.get_by_test_id("stMarkdown").all_inner_texts() if t.startswith("At α"))


def test_dashboard_in_chromium(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(30_000)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(app_url)
            page.get_by_text("generated pairs").first.wait_for()

            # round 1 (the latest round, 2, is shown first)
            page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").nth(1).click()
            page.get_by_role("option", name="1", exact=True).click()
            page.get_by_role("heading", name="Round 1").wait_for()

            # a filter narrows the table
            page.get_by_role("tab", name="Pairs").click()
            page.get_by_text("6 of 6 pairs match").wait_for()
            search = page.get_by_label("search prompt and responses")
            search.fill("photosynthesis")
            search.press("Enter")
            page.get_by_text("1 of 6 pairs match").wait_for()

            # the prompt's K samples; the α slider moves the highlighted pair
            page.get_by_role("tab", name="Prompt").click()
            page.get_by_text("All 4 samples ranked by reward_lr").wait_for()
            assert page.get_by_test_id("stExpander").filter(has_text=re.compile(r"· sample \d")).count() == 4
            assert _pair_line(page).startswith("At α = 0.0070: chosen = sample 1, rejected = sample 3")
            slider = page.get_by_role("slider", name="α")
            slider.focus()
            slider.press("Home")
            page.get_by_text(re.compile(r"^At α = 0\.0000: chosen = sample 0")).wait_for()
            assert _pair_line(page).startswith("At α = 0.0000: chosen = sample 0, rejected = sample 3")
            page.screenshot(path=str(ARTIFACTS / "dashboard-prompt.png"), full_page=True)

            # a response with <script> and <img onerror> is displayed, never executed
            page.get_by_role("tab", name="Pairs").click()
            search.fill("haiku")
            search.press("Enter")
            page.get_by_text("1 of 6 pairs match").wait_for()
            page.get_by_role("tab", name="Prompt").click()
            page.get_by_text("<script>window.__pwned=1</script>", exact=False).first.wait_for()
            page.get_by_role("tab", name="Token credit").click()
            page.get_by_text(re.compile(r"Σ log-ratio = 4\.000")).wait_for()
            page.wait_for_timeout(1000)  # give any injected handler time to fire
            page.screenshot(path=str(ARTIFACTS / "dashboard-credit.png"), full_page=True)
            assert page.evaluate("window.__pwned") is None
            assert page.locator("img[src='x']").count() == 0
            assert not page.evaluate("[...document.scripts].some(s => s.textContent.includes('__pwned'))")
            assert not errors, errors

            # control: the same text parsed as HTML in this page does set the flag
            page.evaluate("t => { const d = document.createElement('div'); d.innerHTML = t; document.body.append(d); }", XSS)
            page.wait_for_function("window.__pwned === 1", timeout=5000)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard-prompt.png").stat().st_size > 10_000
