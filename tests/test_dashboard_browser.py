"""The dashboard in a real headless browser: sign in, submit a recipe, watch it run and finish, open its report.

Drives Debian's chromium through Playwright (no browser download). Screenshots go to
``$SYNTHFORGE_SCREENSHOTS`` when set (the note on the service issue describes them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import DATA, require_module, unavailable
from .test_jobs import TEST_PLUGIN

sync_api = require_module("playwright.sync_api")
CHROMIUM = os.environ.get("SYNTHFORGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def server(tmp_path: Path):
    """``synthforge serve --worker`` on a free port, over a recipes folder with 4k Adult rows and one admin."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "slow_copula.py").write_text(TEST_PLUGIN)
    (recipes / "adult.csv").write_bytes((DATA / "adult_4k.csv").read_bytes())
    recipe = {"name": "adult-ar", "seed": 3, "source": {"path": "adult.csv"}, "holdout": 0.25,
              "generator": {"name": "autoregressive", "params": {"epochs": 12}},
              "output": {"mode": "synthesize", "rows": 2000, "path": "../out/adult-ar", "format": "parquet"}}
    (recipes / "adult-ar.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    environment = {**os.environ, "SYNTHFORGE_PASSWORD": PASSWORD}
    subprocess.run([sys.executable, "-m", "synthforge.cli", "users", "add", "ada", "--role", "admin", "--store",
                    store], check=True, cwd=tmp_path, env=environment, capture_output=True)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "synthforge.cli", "serve", "--port", str(port), "--worker", "--store", store,
         "--recipes", str(recipes), "--outputs", str(tmp_path / "out"), "--data", str(tmp_path / "data"),
         "--plugins-dir", str(tmp_path / "plugins")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the server did not start: {process.stdout.read()}") from None
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_sign_in_submit_watch_and_read_the_report(server: str, tmp_path: Path):
    if CHROMIUM is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    shots = Path(os.environ.get("SYNTHFORGE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(f"{server}/")
        assert page.url.startswith(f"{server}/login"), "an anonymous visitor is sent to the login page"
        page.fill("input[name=username]", "ada")
        page.fill("input[name=password]", PASSWORD)
        page.screenshot(path=str(shots / "1-login.png"))
        page.click("button[type=submit]")
        page.wait_for_url(f"{server}/")
        assert "No jobs yet" in page.inner_text("#jobs")

        page.goto(f"{server}/recipes/new")
        page.set_input_files("#upload input[type=file]", str(DATA / "adult_4k.csv"))
        page.click("#upload button")
        assert "uploads/ada/adult_4k.csv" in page.inner_text("#uploaded")
        page.goto(f"{server}/recipes/new?start=adult-ar.yaml")
        page.wait_for_selector("#validation.ok")
        assert "valid: adult-ar, generator autoregressive" in page.inner_text("#validation")
        editor = page.locator("#recipe_yaml")
        editor.fill(editor.input_value().replace("name: autoregressive", "name: autoregresive"))
        page.wait_for_selector("#validation.error")
        assert "autoregresive" in page.inner_text("#validation") and page.is_disabled("#submit")
        page.screenshot(path=str(shots / "2-editor-invalid.png"))
        editor.fill(editor.input_value().replace("name: autoregresive", "name: autoregressive"))
        page.wait_for_selector("#validation.ok")
        page.click("#submit")
        page.wait_for_url(f"{server}/jobs/*")

        # The run's progress: the fit's epochs as a bar with an ETA, the log growing live.
        page.wait_for_selector("#summary .progress .count", timeout=120_000)
        page.screenshot(path=str(shots / "3-job-running.png"))
        assert "fit" in page.inner_text("#summary .progress") and "loss" in page.inner_text("#summary .progress")
        page.wait_for_function("document.querySelector('#status')?.textContent === 'succeeded'", timeout=240_000)
        page.wait_for_selector("#preview table", timeout=30_000)
        assert "fitting" in page.inner_text("#log") and "wrote" in page.inner_text("#log")
        assert "column_shapes" in page.inner_text("#summary .checks")
        report = page.frame_locator("#report")
        assert "Gates passed" in report.locator("body").inner_text(timeout=30_000)
        page.screenshot(path=str(shots / "4-job-finished.png"), full_page=True)
        page.locator("#report").scroll_into_view_if_needed()
        page.locator("#report").screenshot(path=str(shots / "5-report-embedded.png"))

        page.goto(f"{server}/")
        assert "succeeded" in page.inner_text("#jobs") and "adult-ar (submitted)" in page.inner_text("#jobs")
        page.screenshot(path=str(shots / "6-jobs.png"))
        page.goto(f"{server}/plugins")
        assert "autoregressive" in page.inner_text("#plugins")
        page.screenshot(path=str(shots / "7-plugins.png"))
        page.goto(f"{server}/account")
        page.click("text=Create a token")
        token = page.inner_text("#new-token")
        assert token.startswith("sf_")
        page.screenshot(path=str(shots / "8-account.png"), full_page=True)
        browser.close()
    request = urllib.request.Request(f"{server}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert b'"ada"' in answer.read(), "the token made in the browser works on the API"
