"""What a rollout must show before its challenger is promoted, and what aborts it.

Defaults come from the model's settings (`rollout_*`); a rollout may set its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from common.config import Settings
from common.errors import InvalidInputError

MODES = ("shadow", "canary", "ab")


@dataclass(frozen=True)
class Criteria:
    """The criteria of one rollout (names as in DESIGN.md section 8)."""

    min_labels: int
    max_accuracy_drop: float
    max_error_increase: float
    max_error_rate: float
    max_p99_ratio: float
    max_duration_minutes: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Criteria:
        return cls(
            min_labels=settings.rollout_min_labels,
            max_accuracy_drop=settings.rollout_max_accuracy_drop,
            max_error_increase=settings.rollout_max_error_increase,
            max_error_rate=settings.rollout_max_error_rate,
            max_p99_ratio=settings.rollout_max_p99_ratio,
            max_duration_minutes=settings.rollout_max_duration_minutes,
        )

    def with_changes(self, given: dict[str, Any] | None) -> Criteria:
        """These criteria with `given` (a request's) on top, every value checked.

        Raises
        ------
        InvalidInputError
            Naming each unknown criterion and each value out of its range.
        """
        given = given or {}
        known = {f.name: f.type for f in fields(self)}
        problems = [
            {"field": f"criteria.{name}", "code": "unknown",
             "message": f"no criterion {name!r}; known: {', '.join(known)}"}
            for name in given if name not in known
        ]  # fmt: skip
        values = asdict(self)
        for name, value in given.items():
            if name not in known:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append({"field": f"criteria.{name}", "code": "type",
                                 "message": "must be a number"})  # fmt: skip
                continue
            values[name] = int(value) if name == "min_labels" else float(value)
        for name, low, high in _RANGES:
            value = values[name]
            if not low <= value <= high:
                problems.append({"field": f"criteria.{name}", "code": "range",
                                 "message": f"must be in [{low:g}, {high:g}], "
                                 f"got {value:g}"})  # fmt: skip
        if problems:
            raise InvalidInputError("the rollout's criteria are not valid",
                                    problems=problems)  # fmt: skip
        return Criteria(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_RANGES = (
    ("min_labels", 1, 10_000_000),
    ("max_accuracy_drop", 0.0, 1.0),
    ("max_error_increase", 0.0, 100.0),
    ("max_error_rate", 0.0, 1.0),
    ("max_p99_ratio", 1.0, 1000.0),
    ("max_duration_minutes", 1.0, 60 * 24 * 365),
)
