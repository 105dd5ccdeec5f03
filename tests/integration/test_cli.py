from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from common.config import Settings, get_settings
from common.storage.migrate import head_revision
from services.cli import main
from tests.databases import INTEGRATION_BACKENDS, empty_database

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_settings_cache")]


@pytest.fixture(params=INTEGRATION_BACKENDS)
def runner(request, monkeypatch, tmp_path):
    """The CLI with its settings in the environment, as a user would run it, on an
    empty database of each backend (the CLI migrates it itself)."""
    monkeypatch.setenv("MODELOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELOPS_CONFIG_FILE", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("MODELOPS_DEMO_ROWS", "600")
    with empty_database(Settings(home=str(tmp_path / "home")), request.param) as db:
        monkeypatch.setenv("MODELOPS_DATABASE_URL", db.database_url)
        yield CliRunner()


def test_help_lists_the_commands(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "train", "generate", "db", "models", "datasets"):
        assert command in result.output


def test_generate_writes_the_same_bytes_for_the_same_seed(runner, tmp_path):
    for name in ("a.csv", "b.csv"):
        result = runner.invoke(
            main,
            [
                "generate",
                "--scenario",
                "mean_shift",
                "--rows",
                "300",
                "--seed",
                "4",
                "--mode",
                "gradual",
                "--out",
                str(tmp_path / name),
            ],
        )
        assert result.exit_code == 0, result.output
    assert "wrote 300 rows of mean_shift (gradual)" in result.output
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_train_builtin_prints_metrics_and_promotes_first_version(runner, tmp_path):
    result = runner.invoke(
        main, ["train", "iris", "--model-type", "logistic_regression"]
    )
    assert result.exit_code == 0, result.output
    assert "registered version 1 (champion)" in result.output
    assert "accuracy" in result.output and "f1_score" in result.output
    second = runner.invoke(
        main,
        ["train", "iris", "--param", "C=0.5", "--model-type", "logistic_regression"],
    )
    assert "registered version 2\n" in second.output  # not promoted by default
    listing = runner.invoke(main, ["models", "versions"])
    assert listing.stdout.splitlines()[0].split()[:2] == ["2", "candidate"]
    models = runner.invoke(main, ["models", "list"]).stdout.splitlines()
    assert models == [
        "default                  classification  champion 1     versions 2 (default)"
    ]
    promoted = runner.invoke(main, ["models", "promote", "2"])
    assert "generation 2" in promoted.output
    rolled = runner.invoke(main, ["models", "rollback"])
    assert "version 1 of default is champion (generation 3)" in rolled.output
    other = runner.invoke(main, ["train", "iris", "--model", "flowers",
                                 "--model-type", "logistic_regression"])  # fmt: skip
    assert "registered version 1 (champion)" in other.output
    names = [line.split()[0] for line in runner.invoke(main, ["models", "list"])
             .stdout.splitlines()]  # fmt: skip
    assert names == ["default", "flowers"]
    out = tmp_path / "flowers.csv"
    shaped = runner.invoke(main, ["generate", "--model", "flowers", "--rows", "50",
                                  "--out", str(out)])  # fmt: skip
    assert "wrote 50 rows like model flowers's reference" in shaped.output
    frame = pd.read_csv(out)
    assert len(frame) == 50 and "target" not in frame.columns
    assert list(frame.columns) == [
        "sepal length (cm)", "sepal width (cm)", "petal length (cm)",
        "petal width (cm)",
    ]  # fmt: skip
    unknown = runner.invoke(main, ["models", "versions", "--model", "nope"])
    assert unknown.exit_code == 1
    assert "no model named 'nope'; models are default, flowers" in unknown.output


def test_train_from_a_csv_path_with_target(runner, tmp_path):
    path = tmp_path / "churn.csv"
    runner.invoke(main, ["generate", "--rows", "400", "--out", str(path)])
    result = runner.invoke(
        main,
        [
            "train",
            str(path),
            "--target",
            "churned",
            "--model-type",
            "hist_gradient_boosting",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "registered version 1" in result.output


def test_bad_dataset_gives_a_clear_error_and_registers_nothing(runner, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    result = runner.invoke(main, ["train", str(path), "--target", "label"])
    assert result.exit_code == 1
    assert "target column 'label' not found" in result.output
    assert "too_few_rows" in result.output
    assert runner.invoke(main, ["models", "list"]).stdout == (
        "no model is registered yet\n"
    )


def test_bad_setting_stops_the_command_naming_it(runner, monkeypatch):
    monkeypatch.setenv("MODELOPS_API_PORT", "eighty")
    result = runner.invoke(main, ["datasets"])
    assert result.exit_code == 1
    assert "MODELOPS_API_PORT must be an integer" in result.output


def test_db_upgrade_is_repeatable(runner):
    head = head_revision()
    for _ in range(2):
        result = runner.invoke(main, ["db", "upgrade"])
        assert result.exit_code == 0 and f"revision {head}" in result.output
    current = runner.invoke(main, ["db", "current"]).output
    assert f"current {head}, head {head}" in current


def test_init_trains_the_demo_model_once(runner):
    first = runner.invoke(main, ["init"])
    assert first.exit_code == 0, first.output
    assert "registered version 1 (champion)" in first.output
    again = runner.invoke(main, ["init"])
    assert again.exit_code == 0 and "registered version" not in again.output
    assert len(runner.invoke(main, ["models", "versions"]).stdout.splitlines()) == 1


def test_config_says_where_the_api_key_comes_from_and_masks_secrets(
    runner, tmp_path, monkeypatch
):
    monkeypatch.setenv("MODELOPS_ALERT_WEBHOOK_SECRET", "hook-secret")
    key_file = tmp_path / "home" / "api_key"
    before = runner.invoke(main, ["config"])
    assert before.exit_code == 0, before.output
    assert (
        f"MODELOPS_API_KEY=(unset: modelops up generates one and keeps it in "
        f"{key_file})" in before.output
    )
    assert "MODELOPS_ALERT_WEBHOOK_SECRET=****" in before.output
    assert "hook-secret" not in before.output
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("kept-key\n")
    after = runner.invoke(main, ["config"])
    assert f"MODELOPS_API_KEY=(unset: modelops up uses the key kept in {key_file})" in (
        after.output
    )
    assert "kept-key" not in after.output
    monkeypatch.setenv("MODELOPS_API_KEY", "given-key")
    get_settings.cache_clear()  # a new command in a new process would read it
    given = runner.invoke(main, ["config"])
    assert "MODELOPS_API_KEY=**** (set)" in given.output


def test_a_rollout_from_the_cli_starts_shows_both_arms_and_ends(runner):
    for params in ([], ["--param", "C=0.5"]):
        trained = runner.invoke(main, ["train", "iris", "--model-type",
                                       "logistic_regression", *params])  # fmt: skip
        assert trained.exit_code == 0, trained.output
    started = runner.invoke(main, ["rollout", "start", "2", "--mode", "canary",
                                   "--share", "0.2", "--criterion",
                                   "min_labels=50"])  # fmt: skip
    assert started.exit_code == 0, started.output
    assert (
        "canary of version 2 beside version 1 of default, share 0.2" in started.output
    )
    status = runner.invoke(main, ["rollout", "status"])
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["arm", "champion", "challenger"]
    assert "verdict: continue: 0 of 50 labelled requests per arm" in status.output
    twice = runner.invoke(main, ["rollout", "start", "2", "--mode", "shadow"])
    assert twice.exit_code == 1 and "is running for 'default'" in twice.output
    bad = runner.invoke(main, ["rollout", "start", "2", "--mode", "ab",
                               "--criterion", "min_labels"])  # fmt: skip
    assert bad.exit_code == 2 and "is not NAME=VALUE" in bad.output
    aborted = runner.invoke(main, ["rollout", "abort", "--reason", "not yet"])
    assert "rollout 1 aborted: version 2 of default" in aborted.output
    listed = runner.invoke(main, ["rollout", "list"]).output
    assert "canary  v2    aborted" in listed and "by cli: not yet" in listed
    none = runner.invoke(main, ["rollout", "status"])
    assert none.exit_code == 1 and "has no rollout running" in none.output
