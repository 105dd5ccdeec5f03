"""How a rollout's rows are told apart in the prediction log and the rollups: the
arm that answered and the rollout's id, so two rollouts within one minute never mix
(a rollup row is a minute), and a shadow's rows are never the model's traffic."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

SHADOW = "shadow"


def logged_arm(arm: str, rollout_id: int) -> str:
    """`champion:12`, `challenger:12` or `shadow:12` (at most 20 characters)."""
    return f"{arm}:{rollout_id}"


def not_shadow(column: Any) -> ColumnElement[bool]:
    """Rows that answered someone: every arm but a shadow's."""
    result: ColumnElement[bool] = column.notlike(f"{SHADOW}:%")
    return result
