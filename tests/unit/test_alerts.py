from __future__ import annotations

from datetime import timedelta

import pytest

from common.clock import utcnow
from common.config import Settings
from common.errors import ConfigError, ConflictError
from common.monitoring import alerts
from common.monitoring.alert_rules import (
    DEFAULT_ALERT_RULES,
    AlertRule,
    parse_alert_rules,
)
from common.storage.db import session_scope
from common.storage.tables import (
    Alert,
    AlertDelivery,
    DriftReport,
)
from tests.conftest import train_champion
from tests.logged import logged

FLOOR = AlertRule(
    "accuracy-floor",
    "accuracy",
    "<",
    0.7,
    "critical",
    min_samples=10,
    cooldown_minutes=30,
)


def _labelled(session, right, wrong):
    for label in ["1"] * right + ["0"] * wrong:
        logged(session, prediction="1", confidence=0.9, label=label)


def test_accuracy_alert_opens_once_refreshes_and_resolves(session_factory):
    with session_scope(session_factory) as session:
        _labelled(session, right=4, wrong=2)  # 6 samples < 10: no evidence yet
        assert alerts.evaluate_alerts(session, "default", [FLOOR]) == {
            "opened": [],
            "resolved": [],
        }
        _labelled(session, right=1, wrong=7)  # 5/14 right
        opened = alerts.evaluate_alerts(session, "default", [FLOOR])["opened"]
        assert len(opened) == 1
        assert (
            alerts.evaluate_alerts(session, "default", [FLOOR])["opened"] == []
        )  # one open
        alert = session.get(Alert, opened[0])
        assert (alert.state, alert.severity, alert.subject) == (
            "open",
            "critical",
            "model",
        )
        assert alert.value == pytest.approx(5 / 14)
        assert [d.channel for d in session.query(AlertDelivery)] == ["dashboard"]
        _labelled(session, right=40, wrong=0)
        assert alerts.evaluate_alerts(session, "default", [FLOOR])["resolved"] == opened
        assert session.get(Alert, opened[0]).state == "resolved"


def test_an_alert_names_its_value_at_opening_and_its_latest_and_they_agree(
    session_factory,
):
    with session_scope(session_factory) as session:
        _labelled(session, right=5, wrong=9)  # 5/14
        [opened] = alerts.evaluate_alerts(session, "default", [FLOOR])["opened"]
        alert = session.get(Alert, opened)
        assert alert.message == (
            "accuracy of default was 0.3571 at opening (< 0.7) over 14 samples"
        )
        _labelled(session, right=0, wrong=6)  # 5/20: worse, still open
        alerts.evaluate_alerts(session, "default", [FLOOR])
        alert = session.get(Alert, opened)
        assert alert.value == pytest.approx(0.25)
        assert alert.message == (
            "accuracy of default was 0.3571 at opening (< 0.7) over 14 samples; "
            "latest 0.25 over 20 samples"
        )
        assert alert.details["value_at_open"] == pytest.approx(5 / 14)
        assert alert.details["samples"] == 20


def test_cooldown_keeps_a_flapping_condition_from_reopening(session_factory):
    with session_scope(session_factory) as session:
        _labelled(session, right=0, wrong=20)
        first = alerts.evaluate_alerts(session, "default", [FLOOR])["opened"][0]
        session.get(Alert, first).state = "resolved"
        session.get(Alert, first).resolved_at = utcnow()
        assert (
            alerts.evaluate_alerts(session, "default", [FLOOR])["opened"] == []
        )  # cooling down
        later = utcnow() + timedelta(minutes=31)
        session.get(Alert, first).resolved_at = utcnow() - timedelta(minutes=31)
        assert (
            len(
                alerts.evaluate_alerts(session, "default", [FLOOR], now=later)["opened"]
            )
            == 1
        )


def test_drift_alerts_per_dataset_and_per_feature(session_factory):
    report = {
        "features": {
            "age": {"psi": 0.4, "drifted": True},
            "plan": {"psi": 0.02, "drifted": False},
        },
        "drifted_features": ["age"],
    }
    with session_scope(session_factory) as session:
        session.add(
            DriftReport(
                status="drift",
                window_size=1000,
                dataset_drift=False,
                drift_share=0.5,
                report=report,
            )
        )
        session.flush()
        opened = alerts.evaluate_alerts(session, "default", DEFAULT_ALERT_RULES)[
            "opened"
        ]
        subjects = sorted(session.get(Alert, i).subject for i in opened)
        assert subjects == ["dataset", "feature:age"]


def test_acknowledge_then_resolved_alerts_cannot_be_acknowledged(session_factory):
    with session_scope(session_factory) as session:
        _labelled(session, right=0, wrong=20)
        alert_id = alerts.evaluate_alerts(session, "default", [FLOOR])["opened"][0]
        assert alerts.acknowledge(session, alert_id, "me").state == "acknowledged"
        _labelled(session, right=200, wrong=0)
        alerts.evaluate_alerts(session, "default", [FLOOR])
        with pytest.raises(ConflictError):
            alerts.acknowledge(session, alert_id, "me")


def test_rules_from_toml_are_checked_and_named(tmp_path):
    config = tmp_path / "modelops.toml"
    config.write_text(
        '[[alert_rules]]\nname = "slow"\nmetric = "latency_p99_ms"\n'
        'comparator = ">"\nthreshold = 250\nmin_samples = 5\n'
    )
    settings = Settings.from_env({"MODELOPS_CONFIG_FILE": str(config)})
    assert settings.alert_rules == (
        AlertRule("slow", "latency_p99_ms", ">", 250, min_samples=5),
    )
    config.write_text(
        '[[alert_rules]]\nname = "x"\nmetric = "mood"\ncomparator = "~"\n'
        "threshold = 1\n"
    )
    with pytest.raises(
        ConfigError, match=r"alert_rules\[0\] \(x\).*metric.*comparator"
    ):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(config)})
    with pytest.raises(ConfigError, match="MODELOPS_ALERT_RULES cannot come"):
        Settings.from_env({"MODELOPS_ALERT_RULES": "[]"})
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_alert_rules(
            [
                {
                    "name": "a",
                    "metric": "accuracy",
                    "comparator": "<",
                    "threshold": 1,
                    "colour": "red",
                }
            ],
            "test",
        )


def test_a_collapse_in_request_volume_opens_an_alert(session_factory):
    rule = AlertRule("volume-drop", "volume_drop", ">=", 0.8, "warn", min_samples=20)
    with session_scope(session_factory) as session:
        for index in range(30):  # 30 requests 20 minutes ago, 2 in the last window
            logged(session, created_at=utcnow()
                   - timedelta(minutes=20 if index >= 2 else 1))  # fmt: skip
        (alert_id,) = alerts.evaluate_alerts(session, "default", [rule])["opened"]
        alert = session.get(Alert, alert_id)
        assert alert.subject == "traffic" and alert.value == pytest.approx(1 - 2 / 28)
        quiet = AlertRule("volume-drop", "volume_drop", ">=", 0.8, min_samples=100)
        assert (
            alerts.evaluate_alerts(session, "default", [quiet])["resolved"] == []
        )  # too few


def test_a_new_champion_is_judged_on_its_own_drift_checks(session_factory, db_settings):
    def check(version_id, status, share):
        session.add(
            DriftReport(model_version_id=version_id, status=status, window_size=500,
                        dataset_drift=share >= 0.3, drift_share=share,
                        report={"features": {}, "drifted_features": []})
        )  # fmt: skip
        session.flush()

    rule = AlertRule("dataset-drift", "drift_share", ">=", 0.3, "critical")
    with session_scope(session_factory) as session:
        old, new = (train_champion(session, db_settings) for _ in range(2))
        check(old.id, "drift", 0.5)
        (opened,) = alerts.evaluate_alerts(session, "default", [rule], champion=old)[
            "opened"
        ]
        check(new.id, "insufficient_data", 0.0)  # the new champion has seen too little
        check(old.id, "drift", 0.5)  # a late check of the old one counts no more
        unchanged = alerts.evaluate_alerts(session, "default", [rule], champion=new)
        assert unchanged == {"opened": [], "resolved": []}
        check(new.id, "ok", 0.0)
        assert alerts.evaluate_alerts(session, "default", [rule], champion=new)[
            "resolved"
        ] == [opened]


def test_an_event_alert_is_opened_once_even_by_racing_processes(
    session_factory, monkeypatch
):
    """Two API processes refusing the same artifact open one alert between them."""
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    with session_scope(session_factory) as session:
        first = alerts.artifact_refused(session, "default", 2, "truncated", serving=1)
        assert first is not None and first.severity == "critical"
        assert "still serving version 1" in first.message
        assert (
            alerts.artifact_refused(session, "default", 2, "again", serving=1) is None
        )
    with session_scope(session_factory) as session:  # the database refuses a twin
        twin = Alert(model="default", rule="artifact_refused", subject="version:2",
                     severity="critical", state="open", message="twin")  # fmt: skip
        session.add(twin)
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
    # A process that checked before the other committed still opens none.
    monkeypatch.setattr(alerts, "_active", lambda *_: None)
    with session_scope(session_factory) as session:
        assert (
            alerts.artifact_refused(session, "default", 2, "raced", serving=1) is None
        )
        rows = session.scalars(select(Alert)).all()
        assert [a.message.split(":")[0] for a in rows] == [
            "version 2 of default was refused"
        ]
        rows[0].state = "resolved"
    with session_scope(session_factory) as session:  # resolved: a new one may open
        assert (
            alerts.artifact_refused(session, "default", 2, "again", serving=1)
            is not None
        )
