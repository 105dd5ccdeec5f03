from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.config import Settings, describe_settings
from common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_paths_default_under_home():
    settings = Settings(home="/srv/mo")
    assert settings.database_url == "sqlite:////srv/mo/modelops.db"
    assert settings.artifact_dir == "/srv/mo/artifacts"
    assert settings.data_dir == "/srv/mo/data"


def test_relative_paths_resolve_once_home_against_the_working_directory(
    tmp_path, monkeypatch
):
    """`make run` uses the relative default home `var`: every path must be absolute
    from the start, or a reader in another directory (Flask's send_file) misses it."""
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env(
        {"MODELOPS_DATA_DIR": "inputs", "MODELOPS_CONFIG_FILE": "/nonexistent.toml"}
    )
    home = tmp_path / "var"
    assert settings.home == str(home)
    assert settings.data_dir == str(home / "inputs")
    assert settings.artifact_dir == str(home / "artifacts")
    assert settings.database_url == f"sqlite:///{home / 'modelops.db'}"
    relative_db = Settings(home="var", database_url="sqlite:///db/m.db?timeout=5")
    assert relative_db.database_url == f"sqlite:///{home / 'db/m.db'}?timeout=5"
    kept = Settings(home="var", artifact_dir="memory://models",
                    database_url="postgresql+psycopg://u@h/db")  # fmt: skip
    assert (kept.artifact_dir, kept.database_url) == (
        "memory://models",
        "postgresql+psycopg://u@h/db",
    )
    monkeypatch.chdir("/")  # resolved once: another working directory changes nothing
    assert settings.with_overrides(api_port=1).data_dir == str(home / "inputs")


def test_environment_overrides_defaults_with_types():
    settings = Settings.from_env(
        {
            "MODELOPS_API_PORT": "9001",
            "MODELOPS_PREDICT_AUTH": "yes",
            "MODELOPS_TEST_SIZE": "0.3",
            "MODELOPS_CONFIG_FILE": "/nonexistent.toml",
            "PATH": "/bin",
        }
    )
    assert settings.api_port == 9001
    assert settings.predict_auth is True
    assert settings.test_size == pytest.approx(0.3)


def test_unknown_environment_key_stops_startup_naming_it():
    with pytest.raises(ConfigError, match="MODELOPS_API_PROT"):
        Settings.from_env({"MODELOPS_API_PROT": "9000"})


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("MODELOPS_API_PORT", "eighty", "an integer"),
        ("MODELOPS_TEST_SIZE", "much", "a number"),
        ("MODELOPS_PREDICT_AUTH", "maybe", "true or false"),
    ],
)
def test_wrong_type_in_environment_names_key_and_expectation(key, raw, expected):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({key: raw})
    assert key in caught.value.message
    assert expected in caught.value.message


@pytest.mark.parametrize(
    ("url", "message"),
    [("s3://models/prod", "Install s3fs"), ("bogus://x", "Protocol not known")],
)
def test_an_artifact_store_without_its_backend_stops_startup(url, message):
    with pytest.raises(ConfigError, match="MODELOPS_ARTIFACT_DIR") as caught:
        Settings.from_env(
            {"MODELOPS_ARTIFACT_DIR": url, "MODELOPS_CONFIG_FILE": "/nonexistent"}
        )
    assert message in caught.value.message
    assert Settings(artifact_dir="memory://models").artifact_dir == "memory://models"


def test_out_of_range_value_is_refused():
    with pytest.raises(ConfigError, match="MODELOPS_TEST_SIZE"):
        Settings(test_size=1.5)


def test_toml_file_is_layered_under_environment(tmp_path):
    config = tmp_path / "modelops.toml"
    config.write_text('api_port = 7000\nlog_level = "DEBUG"\n')
    settings = Settings.from_env(
        {"MODELOPS_CONFIG_FILE": str(config), "MODELOPS_API_PORT": "7001"}
    )
    assert settings.api_port == 7001  # environment wins
    assert settings.log_level == "DEBUG"  # file over default
    config.write_text("test_size = 1\n")
    with pytest.raises(ConfigError, match=r"(?i)test_size"):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(config)})  # 1 is out of range


def test_toml_unknown_key_and_wrong_type_are_named(tmp_path):
    config = tmp_path / "modelops.toml"
    config.write_text("api_prot = 7000\n")
    with pytest.raises(ConfigError, match="api_prot"):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(config)})
    config.write_text('api_port = "7000"\n')
    with pytest.raises(ConfigError, match=r"'api_port'.*must be int"):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(config)})
    config.write_text("api_port = true\n")
    with pytest.raises(ConfigError, match="api_port"):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(config)})


def test_malformed_toml_names_the_file(tmp_path):
    config = tmp_path / "modelops.toml"
    config.write_text("api_port = \n")
    with pytest.raises(ConfigError, match=re.escape(str(config))):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(config)})


def test_helper_processes_that_write_are_niced_on_postgresql_only(tmp_path):
    """SQLite has one write lock: a niced holder on busy cores stalls every writer."""
    sqlite = Settings(home=str(tmp_path))
    postgres = Settings(home=str(tmp_path), database_url="postgresql://db/modelops")
    assert sqlite.writer_niceness(sqlite.prediction_log_nice) == 0
    assert postgres.writer_niceness(postgres.prediction_log_nice) == 10
    assert postgres.writer_niceness(postgres.rollout_shadow_nice) == 10


def test_configuration_doc_lists_every_setting_with_its_default():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for env_name, _type, default, _text in describe_settings():
        row = next(
            (ln for ln in doc.splitlines() if ln.startswith(f"| `{env_name}`")), None
        )
        assert row is not None, f"{env_name} missing from docs/configuration.md"
        assert (
            f"`{default!r}`" in row
            or (default == "" and "(derived)" in row)
            or (env_name == "MODELOPS_ALERT_RULES" and "docs/alerts.md" in row)
        ), row


def test_settings_per_model_override_only_what_a_model_may_change(tmp_path):
    """[models.NAME] tables change how that model is watched and retrained; the
    settings stay hashable (processes cache on them) and other keys are refused."""
    toml = tmp_path / "modelops.toml"
    toml.write_text(
        "[models.fraud]\nretrain_accuracy_floor = 0.9\ndrift_share_threshold = 0.5\n"
        '[[models.fraud.alert_rules]]\nname = "error-ceiling"\nmetric = "mae"\n'
        'comparator = ">"\nthreshold = 12.5\n'
    )
    settings = Settings.from_env({"MODELOPS_CONFIG_FILE": str(toml)})
    fraud = settings.for_model("fraud")
    assert (fraud.model_name, fraud.retrain_accuracy_floor) == ("fraud", 0.9)
    assert [rule.metric for rule in fraud.alert_rules] == ["mae"]
    other = settings.for_model("churn")
    assert other.retrain_accuracy_floor == 0.7 and other.model_name == "churn"
    assert hash(settings) == hash(settings.with_overrides())
    toml.write_text("[models.fraud]\napi_port = 9000\n")
    with pytest.raises(ConfigError, match="api_port cannot be set per model"):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(toml)})
    toml.write_text("[models.Fraud]\nretrain_cron = ''\n")
    with pytest.raises(ConfigError, match="'Fraud' is not a model name"):
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(toml)})
    with pytest.raises(ConfigError, match="MODELOPS_MODEL_NAME is now "
                       "MODELOPS_DEFAULT_MODEL"):  # fmt: skip
        Settings.from_env({"MODELOPS_MODEL_NAME": "x"})


def test_a_retired_setting_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match=r"MODELOPS_METRICS_SNAPSHOT_SECONDS is "
                       r"retired .*per-minute rollups.*remove it"):  # fmt: skip
        Settings.from_env({"MODELOPS_METRICS_SNAPSHOT_SECONDS": "60"})
    toml = tmp_path / "modelops.toml"
    toml.write_text("snapshot_retention_days = 30\n")
    with pytest.raises(ConfigError, match=r"'snapshot_retention_days' in .* is "
                       "retired"):  # fmt: skip
        Settings.from_env({"MODELOPS_CONFIG_FILE": str(toml)})
