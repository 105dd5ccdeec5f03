"""Case 4: promotions back and forth while concurrent clients predict. No request
fails, and each answer comes from a version that was champion during the request or,
at most the swap lag before it: each API process notices a promotion on its next
poll and swaps once the new model is loaded and warmed (docs/architecture.md)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import AUTH, http, prepare_home
from tests.faults.load import PredictLoad

pytestmark = pytest.mark.faults

POLL_MS = 200
SWAP_LAG_SECONDS = 1.5  # the poll interval plus load and warm-up, with margin


def test_promotions_under_load_fail_no_request_and_serve_the_champion(
    tmp_path, start_api, record
):
    settings = prepare_home(tmp_path / "home", ("logistic_regression", "random_forest"))
    api = start_api(
        settings, MODELOPS_MODEL_POLL_MS=str(POLL_MS), MODELOPS_API_WORKERS="2"
    )
    # (promote call sent, its answer received, version): each commit lies between.
    reigns: list[tuple[float, float, int]] = [(0.0, 0.0, 1)]
    with PredictLoad(api.url, clients=6) as load:
        for version in (2, 1, 2, 1, 2, 1, 2, 1):
            time.sleep(0.8)
            sent = time.monotonic()
            status, _, body = http(
                "POST", f"{api.url}/models/{version}/promote", {"reason": "swap"}, AUTH
            )
            assert status == 200, body
            reigns.append((sent, time.monotonic(), version))
        time.sleep(1.5)

    def staleness(answer) -> float:
        """0 when the answering version was champion during the request; else how
        long after its reign ended the request started (inf: it never reigned)."""
        best = float("inf")
        for index, (sent, _, version) in enumerate(reigns):
            if str(version) != answer.version:
                continue
            following = reigns[index + 1] if index + 1 < len(reigns) else None
            ended = following[1] if following else float("inf")
            if sent <= answer.ended and answer.started <= ended:
                return 0.0
            best = min(best, answer.started - ended)
        return best

    assert len(load.answers) > 200
    assert load.failed == []  # zero failed requests
    lags = [staleness(a) for a in load.answers]
    assert max(lags) <= SWAP_LAG_SECONDS, max(lags)
    assert {a.version for a in load.answers} == {"1", "2"}
    record(
        "model-swap",
        requests=len(load.answers),
        promotions=len(reigns) - 1,
        failed_requests=len(load.failed),
        answers_from_a_version_never_champion=sum(lag == float("inf") for lag in lags),
        answers_after_the_swap_lag=sum(lag > SWAP_LAG_SECONDS for lag in lags),
        stale_answers=sum(lag > 0 for lag in lags),
        max_stale_seconds=round(max(lags), 3),
    )
