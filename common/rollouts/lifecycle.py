"""Starting, reading and ending rollouts. One runs per model at a time (the database
holds that, however many processes start one); promoting makes its challenger the
champion, aborting leaves the champion alone; every change is audited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.clock import to_iso, utcnow
from common.config import Settings
from common.errors import ConflictError, InvalidInputError, NotFoundError
from common.models import catalog, registry
from common.rollouts.comparison import compare
from common.rollouts.criteria import MODES, Criteria
from common.storage import repositories as repo
from common.storage.tables import Rollout

DEFAULT_SHARE = {"shadow": 1.0, "ab": 0.5}  # a canary's comes from settings


def start_rollout(
    session: Session,
    settings: Settings,
    *,
    version: int,
    mode: str,
    share: float | None = None,
    criteria: dict[str, Any] | None = None,
    actor: str = "system",
) -> Rollout:
    """Put `version` beside the champion of `settings.model_name` in `mode`.

    Raises
    ------
    InvalidInputError
        An unknown mode, a share out of range, criteria out of range, or a version
        that does not take the champion's features.
    ModelNotFoundError
        Unknown model or version.
    ModelNotReadyError
        The model has no champion to compare with.
    ConflictError
        A rollout is already running, or the version is the champion.
    ArtifactError
        The version's artifact is missing or damaged (it could not serve).
    """
    name = settings.model_name
    catalog.get_model(session, name)
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}",
                                field="mode")  # fmt: skip
    share = _checked_share(mode, share, settings)
    checked = Criteria.from_settings(settings).with_changes(criteria)
    champion = registry.get_champion(session, settings)
    challenger = registry.get_version(session, settings, version)
    if challenger.id == champion.model_version_id:
        raise ConflictError(f"version {version} is the champion of {name!r}: start a "
                            "rollout of another version", version=version)  # fmt: skip
    _check_features(challenger.feature_names, champion.model_version.feature_names)
    running = find_running(session, name)
    if running is not None:
        raise _already_running(running)
    registry.verify_artifact(settings, challenger)
    rollout = Rollout(
        model=name, challenger_version_id=challenger.id,
        champion_version_id=champion.model_version_id, mode=mode, share=share,
        criteria=checked.to_dict(), state="running", started_by=actor,
        started_at=utcnow(),
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(rollout)
            session.flush()
    except IntegrityError:  # another process started one a moment ago
        raise _already_running(find_running(session, name)) from None
    repo.add_audit_event(session, "rollout_start", "rollout", rollout.id, actor=actor,
                         model=name, version=version, mode=mode, share=share,
                         criteria=checked.to_dict())  # fmt: skip
    return rollout


def find_running(session: Session, model: str) -> Rollout | None:
    return session.scalar(
        select(Rollout).where(Rollout.model == model, Rollout.state == "running")
    )


def get_running(session: Session, model: str) -> Rollout:
    """Raises `NotFoundError` when `model` has no rollout running."""
    catalog.get_model(session, model)
    rollout = find_running(session, model)
    if rollout is None:
        raise NotFoundError(f"model {model!r} has no rollout running", model=model)
    return rollout


def promote(
    session: Session,
    settings: Settings,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> Rollout:
    """Make the running rollout's challenger the champion and end the rollout.

    Raises
    ------
    NotFoundError
        No rollout is running.
    ConflictError
        The champion changed since the rollout started (the rollout is ended as
        superseded: it compared against a version that no longer serves).
    """
    rollout = get_running(session, settings.model_name)
    champion = registry.get_champion(session, settings)
    if champion.model_version_id != rollout.champion_version_id:
        served = champion.model_version.version
        end(
            session,
            rollout,
            "aborted",
            decided_by=actor,
            evidence=evidence,
            reason=f"superseded: version {served} became champion outside the rollout",
        )
        raise ConflictError(f"the champion changed to version {served} since the "
                            "rollout started; it was ended, not promoted",
                            version=served)  # fmt: skip
    registry.promote_version(session, settings, rollout.challenger.version,
                             reason=f"rollout {rollout.id}: {reason}",
                             actor=actor)  # fmt: skip
    end(session, rollout, "promoted", decided_by=actor, reason=reason,
        evidence=evidence)  # fmt: skip
    return rollout


def abort(
    session: Session,
    settings: Settings,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> Rollout:
    """End the running rollout; the champion alone serves again.

    Raises
    ------
    NotFoundError
        No rollout is running.
    """
    rollout = get_running(session, settings.model_name)
    end(session, rollout, "aborted", decided_by=actor, reason=reason,
        evidence=evidence)  # fmt: skip
    return rollout


def decide_by_hand(
    session: Session, settings: Settings, action: str, *, actor: str, reason: str
) -> Rollout:
    """`promote` or `abort` the running rollout for a person (API, CLI), keeping the
    live comparison it was decided on as its evidence."""
    running = get_running(session, settings.model_name)
    task = catalog.get_model(session, settings.model_name).task
    decide = promote if action == "promote" else abort
    return decide(session, settings, actor=actor, reason=reason,
                  evidence=compare(session, running, task))  # fmt: skip


def end(
    session: Session,
    rollout: Rollout,
    state: str,
    *,
    decided_by: str,
    reason: str,
    evidence: dict[str, Any] | None,
) -> None:
    """End `rollout` as `state` (promoted or aborted), with why, and audit it."""
    rollout.state = state
    rollout.ended_at = utcnow()
    rollout.decided_by = decided_by
    rollout.reason = reason
    rollout.evidence = evidence
    action = "rollout_promote" if state == "promoted" else "rollout_abort"
    repo.add_audit_event(session, action, "rollout", rollout.id, actor=decided_by,
                         model=rollout.model, reason=reason,
                         version=rollout.challenger.version)  # fmt: skip


def history(session: Session, model: str, limit: int = 50) -> Sequence[Rollout]:
    """`model`'s rollouts, newest first."""
    catalog.get_model(session, model)
    return session.scalars(
        select(Rollout).where(Rollout.model == model)
        .order_by(Rollout.id.desc()).limit(limit)
    ).all()  # fmt: skip


def rollout_out(rollout: Rollout) -> dict[str, Any]:
    """The rollout as the API and the CLI show it."""
    return {
        "id": rollout.id,
        "model": rollout.model,
        "mode": rollout.mode,
        "share": rollout.share,
        "state": rollout.state,
        "challenger": {"version": rollout.challenger.version,
                       "model_type": rollout.challenger.model_type},
        "champion": {"version": rollout.champion.version,
                     "model_type": rollout.champion.model_type},
        "criteria": rollout.criteria,
        "started_at": to_iso(rollout.started_at),
        "started_by": rollout.started_by,
        "ended_at": to_iso(rollout.ended_at),
        "checked_at": to_iso(rollout.checked_at),
        "decided_by": rollout.decided_by,
        "reason": rollout.reason,
        "evidence": rollout.evidence,
    }  # fmt: skip


def _checked_share(mode: str, share: float | None, settings: Settings) -> float:
    if share is None:
        return DEFAULT_SHARE.get(mode, settings.rollout_share)
    if isinstance(share, bool) or not isinstance(share, int | float):
        raise InvalidInputError("share must be a number", field="share")
    high = 1.0 if mode == "shadow" else 0.99
    if not 0.01 <= share <= high:
        raise InvalidInputError(
            f"a {mode} rollout's share must be in [0.01, {high:g}], got {share:g}"
            + ("" if mode == "shadow" else ": the champion keeps some traffic"),
            field="share",
        )
    return float(share)


def _check_features(challenger: list[str], champion: list[str]) -> None:
    missing = sorted(set(challenger) - set(champion))
    if missing:
        raise InvalidInputError(
            "the challenger needs features the champion's requests do not carry: "
            + ", ".join(missing), field="version", missing=missing,
        )  # fmt: skip


def _already_running(running: Rollout | None) -> ConflictError:
    if running is None:
        return ConflictError("a rollout is already running for this model")
    return ConflictError(
        f"rollout {running.id} ({running.mode} of version "
        f"{running.challenger.version}) is running for {running.model!r}: promote or "
        "abort it first", rollout=running.id,
    )  # fmt: skip
