"""A running system (the API, a Celery worker, beat, Redis and `modelops simulate`)
for the dashboard, and Debian's Chromium driven by Playwright (never a downloaded
browser). Each page the tests visit is screenshotted to test-output/screenshots."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from common.config import Settings
from tests.e2e.conftest import (
    Api,
    launch_api,
    launch_simulator,
    launch_worker,
    prepare_home,
    stop_processes,
)

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
XSS = "<img src=x onerror=window.__xss=1>"
# Short intervals, so drift and alerts show within seconds; no automatic retrains,
# so the versions the tests expect are the ones they make.
LOOP = {
    "MODELOPS_DRIFT_CHECK_SECONDS": "3",
    "MODELOPS_MONITOR_INTERVAL_SECONDS": "1",
    "MODELOPS_DRIFT_WINDOW_ROWS": "200",
    "MODELOPS_DRIFT_MIN_ROWS": "150",
    "MODELOPS_RETRAIN_ON_DRIFT": "false",
    "MODELOPS_RETRAIN_ACCURACY_FLOOR": "0",
    "MODELOPS_MODEL_POLL_MS": "200",
    "MODELOPS_DEMO_ROWS": "30000",  # a retrain long enough to show its progress
}
RULES = f"""
[[alert_rules]]
name = "dataset-drift"
metric = "drift_share"
comparator = ">="
threshold = 0.3
severity = "critical"

[[alert_rules]]
name = "{XSS}"
metric = "error_rate"
comparator = ">="
threshold = 0.0
min_samples = 1
"""


@dataclass
class System:
    api: Api
    settings: Settings
    redis_url: str
    log_dir: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def restart_api(self) -> None:
        port = int(self.api.url.rsplit(":", 1)[1])
        self.api = launch_api(
            self.settings, self.redis_url, self.log_dir, port=port, **self.env
        )


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[System]:
    log_dir = tmp_path_factory.mktemp("browser")
    home = log_dir / "home"
    settings = prepare_home(home, versions=("random_forest",))
    (home / "modelops.toml").write_text(RULES)
    env = {**LOOP, "MODELOPS_CONFIG_FILE": str(home / "modelops.toml")}
    running = System(launch_api(settings, redis_url, log_dir, **env), settings,
                     redis_url, log_dir, env)  # fmt: skip
    running.processes += [
        launch_worker(settings, redis_url, log_dir, **env),
        launch_worker(settings, redis_url, log_dir, "beat", beat=True, **env),
    ]
    running.processes.append(
        launch_simulator(running.api.url, log_dir, rate=30, label_delay=0.5)
    )
    yield running
    running.api.stop()
    stop_processes(running.processes)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed: run `make test` (it installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        yield browser
        browser.close()


@dataclass
class Tab:
    """A page with what its console said; `errors` must stay empty."""

    page: Any
    errors: list[str]

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def tab(browser: Any, system: System) -> Iterator[Tab]:
    context = browser.new_context(
        base_url=system.api.url, viewport={"width": 1400, "height": 900}
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield Tab(page, errors)
    context.close()
