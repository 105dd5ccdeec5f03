"""Beat's look at one model's running rollout: compare the arms, judge, and promote
or abort on the evidence, auditing the decision and raising an alert event (the
dashboard shows it; the webhook gets it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from common.clock import utcnow
from common.config import Settings
from common.models import catalog, registry
from common.monitoring import alerts
from common.rollouts import lifecycle
from common.rollouts.comparison import compare
from common.rollouts.criteria import Criteria
from common.rollouts.decisions import Verdict, judge

log = logging.getLogger(__name__)
ACTOR = "monitor"


@dataclass(frozen=True)
class Decision:
    """What the monitor found: the rollout, its verdict, and the alert it raised."""

    rollout_id: int
    verdict: Verdict
    alert_id: int | None


def monitor_rollout(
    session: Session, settings: Settings, now: datetime | None = None
) -> Decision | None:
    """Judge the running rollout of `settings.model_name`; None when none runs."""
    now = now or utcnow()
    model = settings.model_name
    rollout = lifecycle.find_running(session, model)
    if rollout is None:
        return None
    champion = registry.find_champion(session, settings)
    if champion is None or champion.model_version_id != rollout.champion_version_id:
        served = champion.model_version.version if champion else None
        verdict = Verdict("abort", "superseded", (
            f"version {served} became champion outside the rollout"))  # fmt: skip
        lifecycle.end(session, rollout, "aborted", decided_by=ACTOR,
                      reason=verdict.reason, evidence=None)  # fmt: skip
        return Decision(rollout.id, verdict, _raise(session, rollout, verdict))
    task = catalog.get_model(session, model).task
    rollout.checked_at = now  # judged on the rollups as of now, decided or not
    comparison = compare(session, rollout, task, now)
    verdict = judge(rollout, comparison, Criteria(**rollout.criteria), now)
    if verdict.decision == "continue":
        return Decision(rollout.id, verdict, None)
    evidence: dict[str, Any] = {**comparison, "criterion": verdict.criterion}
    reason = f"{verdict.criterion}: {verdict.reason}"
    if verdict.decision == "promote":
        lifecycle.promote(session, settings, actor=ACTOR, reason=reason,
                          evidence=evidence)  # fmt: skip
    else:
        lifecycle.abort(session, settings, actor=ACTOR, reason=reason,
                        evidence=evidence)  # fmt: skip
    log.info("rollout %d of %s: %s (%s)", rollout.id, model, verdict.decision, reason)
    return Decision(rollout.id, verdict, _raise(session, rollout, verdict))


def _raise(session: Session, rollout: Any, verdict: Verdict) -> int | None:
    """An alert event for the decision (one per rollout), so it reaches the
    dashboard's alerts and the webhook."""
    outcome = "promoted" if verdict.decision == "promote" else "aborted"
    alert = alerts.open_event_alert(
        session, rollout.model, f"rollout_{outcome}", f"rollout:{rollout.id}",
        severity="warn",
        message=(f"{rollout.mode} rollout of {rollout.model} version "
                 f"{rollout.challenger.version} {outcome} by the monitor "
                 f"({verdict.criterion}): {verdict.reason}"),
        rollout=rollout.id, version=rollout.challenger.version,
        criterion=verdict.criterion,
    )  # fmt: skip
    session.flush()
    return alert.id if alert else None
