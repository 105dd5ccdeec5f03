"""Render the fault suite's last figures into docs/reliability.md.

`make test` (or `.venv/bin/pytest tests/faults tests/e2e/test_up.py`) writes each
case's figures to test-output/reliability/; then
`.venv/bin/python -m tests.faults.report` rewrites the table between the markers.
"""

from __future__ import annotations

import html
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-output" / "reliability"
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


@dataclass(frozen=True)
class Case:
    number: str
    name: str
    injection: str
    expected: str
    test: str


CASES = [
    Case("1", "worker-killed-retrain",
         "SIGKILL to the whole worker at 20% of a retrain (40k rows); a new worker starts",
         "the job completes once on the new worker; one new version",
         "tests/faults/test_worker_killed.py"),
    Case("1", "worker-killed-batch",
         "SIGKILL to the whole worker at 15% of a 300k-row batch score; a new worker starts",
         "the job completes once; the output has every input row exactly once",
         "tests/faults/test_worker_killed.py"),
    Case("2", "redis-restart-aof",
         "Redis (AOF everysec) SIGKILLed with 5 jobs queued, down 3 s, restarted, under 4 predicting clients",
         "zero failed /predict; the 5 jobs run once when a worker starts",
         "tests/faults/test_redis_restart.py"),
    Case("2", "redis-restart-no-aof",
         "the same with a Redis that keeps nothing: the 5 messages are lost",
         "zero failed /predict; beat publishes the 5 again (MODELOPS_JOB_REPUBLISH_SECONDS, 3 s here); each runs once",
         "tests/faults/test_redis_restart.py"),
    Case("3", "api-sigterm",
         "SIGTERM to the API server under 8 clients, log rows held in memory until shutdown",
         "in-flight requests answered; a log row for every answered request",
         "tests/faults/test_api_sigterm.py"),
    Case("4", "model-swap",
         "8 promotions back and forth, 0.8 s apart, 2 API processes, 6 clients",
         "zero failed requests; every answer from the champion, or from its predecessor within the swap lag",
         "tests/faults/test_model_swap.py"),
    Case("5", "damaged-artifact",
         "v2's artifact truncated, then promoted; v3's replaced by another model's pickle after its promotion, later restored",
         "promotion refused (409); never loaded; v1 keeps serving; one alert per version, sent to the webhook; restoring the file serves v3 and resolves its alert",
         "tests/faults/test_damaged_artifact.py"),
    Case("6", "database-sqlite-locked",
         "another process holds SQLite's write lock under 4 clients until the spools overflow (400 rows per process)",
         "/predict answers; rows spooled and written after; drops counted in Prometheus",
         "tests/faults/test_database_trouble.py"),
    Case("6", "database-sqlite-disk-full",
         "the SQLite file's own tmpfs filled until the spools overflow, its WAL truncated first (skipped where tmpfs cannot be mounted)",
         "as above",
         "tests/faults/test_database_trouble.py"),
    Case("6", "database-postgresql-read-only",
         "PostgreSQL database set read-only (connections ended) under 4 clients until the spools overflow",
         "as above",
         "tests/faults/test_database_trouble.py"),
    Case("7", "contention",
         "1 minute: 4 predicting clients, labels, batch jobs and retrains on 2 workers, beat every 2 s, one SQLite file",
         "zero 'database is locked'; rows equal the work done",
         "tests/faults/test_contention.py"),
    Case("8", "webhook-down",
         "webhook receiver not listening when an alert opens, started after 2 failed attempts",
         "attempts stored and retried; alert kept open; delivered once, signed",
         "tests/faults/test_webhook_down.py"),
    Case("9", "bad-input-schemathesis",
         "schemathesis: generated requests for every operation of /openapi.json (25 examples each)",
         "no 5xx; no status or body outside the document",
         "tests/faults/test_bad_input.py"),
    Case("9", "bad-input-predict",
         "hypothesis: /predict bodies with NaN, Infinity, 1e309, 10^400, wrong types, unicode, 100k-char strings, missing and extra fields",
         "each a 400 listing exactly the broken fields",
         "tests/faults/test_bad_input.py"),
    Case("9", "bad-input-feedback",
         "hypothesis: /feedback bodies with wrong ids and labels, long strings, missing and extra fields",
         "each a 400 naming the broken fields",
         "tests/faults/test_bad_input.py"),
    Case("10", "security-auth",
         "every mutating operation with no key, wrong keys, a non-bearer scheme, one right and one wrong header",
         "401 for each",
         "tests/faults/test_security.py"),
    Case("10", "security-paths",
         "dataset names ../x, absolute, ., .., a/b, a\\b, NUL, %2e%2e, a symlink out; an upload named ../../x.csv; ../ in asset paths",
         "400 or 404; nothing read or written outside the data directory",
         "tests/faults/test_security.py"),
    Case("10", "security-413",
         "500 MB announced to /predict and to the upload, a few bytes sent",
         "413 at once, body not read",
         "tests/faults/test_security.py"),
    Case("10", "security-dashboard",
         "the page's Content-Security-Policy and scripts; alert text with <img onerror> in Chromium",
         "no inline script; no HTML sink; markup shown as text",
         "tests/faults/test_security.py, tests/browser/test_dashboard.py"),
    Case("10", "security-loopback",
         "`modelops up` with default settings",
         "every listening socket on 127.0.0.1",
         "tests/e2e/test_up.py"),
    Case("11", "supervisor-restarts",
         "under `modelops up`, SIGKILL to the worker (mid batch score), beat, Flower, Redis and the API server's main process in turn, one client predicting",
         "each restarted and counted; no failed /predict but while the API restarts; the job completes once; Redis keeps its data (AOF)",
         "tests/e2e/test_supervisor.py"),
    Case("12", "closed-loop-readme",
         "the README's demo as written: `modelops up` with drift checks every 20 s and the policy every 5 s, a demo reset, `simulate --rate 20 --label-delay 2`, the switch to regime_change",
         "a new champion, every alert resolved and the policy healthy within 3 minutes; a decision and its reason at every poll",
         "tests/e2e/test_readme_loop.py"),
]  # fmt: skip


def _figures(case: Case) -> str:
    path = RESULTS / f"{case.name}.json"
    if not path.is_file():
        return "not run"
    figures = json.loads(path.read_text())["figures"]
    return "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())


def render() -> str:
    lines = [
        "| # | case | injection | expected | measured in the last run | test |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in CASES:
        cells = [case.number, case.name, case.injection, case.expected, _figures(case)]
        text = " | ".join(html.escape(cell, quote=False) for cell in cells)
        lines.append(f"| {text} | `{case.test}` |")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([*lines, "", f"Rendered {stamp} from test-output/reliability/."])


def main() -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + render() + "\n" + text[end:])
    sys.stdout.write(f"wrote {DOC.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
