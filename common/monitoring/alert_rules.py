"""Alert rules: what to watch, from `[[alert_rules]]` in modelops.toml or defaults."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from common.errors import ConfigError

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
METRICS = {
    "accuracy": "live accuracy from labelled predictions (samples: labelled count)",
    "mae": "a regressor's mean absolute error on labelled predictions (samples: "
    "labelled count)",
    "rmse": "a regressor's root mean squared error on labelled predictions "
    "(samples: labelled count)",
    "error_rate": "share of /predict calls refused or failed (samples: requests)",
    "latency_p99_ms": "p99 latency of /predict (samples: requests)",
    "drift_share": "share of drifted features in the latest check (samples: window)",
    "feature_psi": "PSI of each drifted feature in the latest check (one alert each)",
    "volume_drop": "1 - requests now / requests in the window before "
    "(samples: requests before)",
}
SEVERITIES = ("warn", "critical")


@dataclass(frozen=True)
class AlertRule:
    """Opens an alert when `metric comparator threshold` holds on enough samples."""

    name: str
    metric: str
    comparator: str
    threshold: float
    severity: str = "warn"
    min_samples: int = 0
    window_minutes: int = 15
    cooldown_minutes: int = 30

    def holds(self, value: float) -> bool:
        return COMPARATORS[self.comparator](value, self.threshold)


DEFAULT_ALERT_RULES = (
    AlertRule("accuracy-floor", "accuracy", "<", 0.7, "critical", min_samples=50),
    AlertRule("error-rate", "error_rate", ">", 0.05, "warn", min_samples=20),
    AlertRule("p99-latency", "latency_p99_ms", ">", 500.0, "warn", min_samples=20),
    AlertRule("dataset-drift", "drift_share", ">=", 0.3, "critical"),
    AlertRule("feature-drift", "feature_psi", ">=", 0.1, "warn"),
    AlertRule("volume-drop", "volume_drop", ">=", 0.8, "warn", min_samples=100),
)


def parse_alert_rules(items: Any, source: str) -> tuple[AlertRule, ...]:
    """Validate `[[alert_rules]]` tables, naming the rule and key at fault.

    Raises
    ------
    ConfigError
        For a missing or unknown key, a wrong type, or an unknown metric, comparator
        or severity.
    """
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"alert_rules in {source} must be a list of tables")
    known = {f.name: f for f in fields(AlertRule)}
    rules = []
    for index, item in enumerate(items):
        where = f"alert_rules[{index}] ({item.get('name', '?')}) in {source}"
        unknown = sorted(set(item) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}")
        try:
            rule = AlertRule(**item)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        _check_rule(rule, where)
        rules.append(rule)
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ConfigError(f"alert rule names in {source} must be unique")
    return tuple(rules)


def _check_rule(rule: AlertRule, where: str) -> None:
    problems = []
    if rule.metric not in METRICS:
        problems.append(f"metric must be one of {sorted(METRICS)}")
    if rule.comparator not in COMPARATORS:
        problems.append(f"comparator must be one of {sorted(COMPARATORS)}")
    if rule.severity not in SEVERITIES:
        problems.append("severity must be warn or critical")
    if not isinstance(rule.threshold, int | float) or isinstance(rule.threshold, bool):
        problems.append("threshold must be a number")
    for name in ("min_samples", "window_minutes", "cooldown_minutes"):
        value = getattr(rule, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{name} must be a whole number >= 0")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
