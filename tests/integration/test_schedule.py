from __future__ import annotations

import subprocess
import sys

import pytest

from common.config import Settings
from services.scheduler.schedule import build_beat_schedule

pytestmark = pytest.mark.integration


def test_every_scheduled_task_is_registered_on_the_worker():
    from services.worker.celery_app import app

    app.loader.import_default_modules()
    schedule = build_beat_schedule(Settings(retrain_cron="30 2 * * 1"))
    assert "retrain-scheduled" in schedule and "drift-check" in schedule
    for key, entry in schedule.items():
        assert entry["task"] in app.tasks, key


def test_beat_imports_neither_task_code_nor_scikit_learn():
    code = (
        "import sys, services.scheduler.beat as beat; "
        "print(sorted(n for n in beat.app.tasks if not n.startswith('celery.'))); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert out == ["[]", "False"]
