"""The `modelops` command: up, train, generate, db, models, rollout, datasets."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from common.config import MODEL_TYPES, Settings, describe_settings, get_settings
from common.data import synthetic
from common.data.datasets import list_datasets, load_training_source
from common.errors import AppError
from common.logging import configure_logging
from common.models import catalog, registry
from common.models.importing import ImportRequest, register_file
from common.models.lifecycle import train_version
from common.models.profile import sample_rows
from common.storage import backup
from common.storage.db import make_engine, session_scope
from common.storage.migrate import (
    current_revision,
    head_revision,
    migrated_sessions,
)
from services import simulator, system
from services.cli_rollouts import register_commands as register_rollout_commands
from services.console import ProgressBar, echo_version

log = logging.getLogger(__name__)


class AppErrorGroup(click.Group):
    """Shows our errors as one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AppError as exc:
            details = f" {json.dumps(exc.details, default=str)}" if exc.details else ""
            raise click.ClickException(f"{exc.message}{details}") from exc


MODEL_OPTION = click.option(
    "--model", default=None, metavar="NAME",
    help="The model to act on (default: MODELOPS_DEFAULT_MODEL).",
)  # fmt: skip


@click.group(cls=AppErrorGroup)
def main() -> None:
    """ModelOps: deploy, monitor and retrain scikit-learn models on one machine."""


def _settings(*, quiet: bool = True, **overrides: Any) -> Settings:
    """Process settings; one-shot commands log warnings only (their output is the
    result), `up` logs at the configured level."""
    settings = get_settings()
    if overrides:
        settings = settings.with_overrides(**overrides)
    configure_logging(settings)
    if quiet:
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    return settings


def _model_settings(model: str | None) -> Settings:
    settings = _settings()
    return settings.for_model(catalog.check_model_name(model or settings.default_model))


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (safe to repeat)."""
    with migrated_sessions(_settings()):
        pass
    click.echo(f"database at revision {head_revision()}")


@main.command("backup")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def backup_command(directory: Path) -> None:
    """Copy the database and every artifact into DIRECTORY while the system serves
    (SQLite's backup API or pg_dump; a manifest of sha256s is written last)."""
    done = backup.backup(_settings(), directory, progress=_progress)
    click.echo(f"backed up to {done['directory']}: database at revision "
               f"{done['revision']}, {done['artifacts']} artifacts, "
               f"{done['bytes']:,} bytes in {done['seconds']} s")  # fmt: skip


@main.command("restore")
@click.argument("directory", type=click.Path(exists=True, file_okay=False,
                                             path_type=Path))  # fmt: skip
def restore_command(directory: Path) -> None:
    """Restore a backup into this (fresh) home; every file is checked first."""
    done = backup.restore(_settings(), directory, progress=_progress)
    click.echo(f"restored {directory}: {done['artifacts']} artifacts, database at "
               f"revision {done['revision']}")  # fmt: skip


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


@db.command("current")
def db_current() -> None:
    """Show the revision the database is at."""
    engine = make_engine(_settings())
    try:
        current = current_revision(engine) or "none"
    finally:
        engine.dispose()
    click.echo(f"current {current}, head {head_revision()}")


@main.command()
@click.argument("source", required=False)
@click.option("--target", help="Column to predict (built-in datasets know theirs).")
@click.option("--model-type", type=click.Choice(MODEL_TYPES), default=None)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Estimator parameter; VALUE is read as JSON when it parses.",
)
@click.option(
    "--promote/--no-promote",
    default=None,
    help="Make it champion (default: only when there is none).",
)
@click.option("--reason", default="manual training from the CLI", show_default=True)
@MODEL_OPTION
def train(
    source: str | None,
    target: str | None,
    model_type: str | None,
    params: tuple[str, ...],
    promote: bool | None,
    reason: str,
    model: str | None,
) -> None:
    """Train on SOURCE (a dataset name or a CSV/Parquet path) and register it as a
    version of --model (default: the default model)."""
    settings = _model_settings(model)
    dataset = load_training_source(settings, source or settings.demo_dataset, target)
    with (
        migrated_sessions(settings) as factory,
        session_scope(factory) as session,
        ProgressBar("training") as progress,
    ):
        trained = train_version(
            session,
            settings,
            dataset,
            model_type=model_type or settings.demo_model_type,
            params=_parse_params(params),
            reason=reason,
            promote=promote,
            actor="cli",
            progress=progress,
        )
    echo_version(
        trained.version.version, trained.result.metrics.to_dict(), trained.promoted
    )


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{item!r} is not NAME=VALUE", param_hint="--param"
            )
        try:
            parsed[name] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[name] = raw
    return parsed


@main.command()
@click.option(
    "--scenario",
    type=click.Choice(list(synthetic.SCENARIOS)),
    default="baseline",
    show_default=True,
)
@click.option(
    "--rows", type=click.IntRange(1, 10_000_000), default=1000, show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file; .csv or .parquet.",
)
@click.option(
    "--mode", type=click.Choice(synthetic.MODES), default="sudden", show_default=True
)
@click.option(
    "--drift-start",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Share of rows before the drift begins.",
)
@click.option(
    "--magnitude",
    type=float,
    default=None,
    help="Strength of the drift (scenario's own default when omitted).",
)
@click.option("--features", default=None, help="Comma-separated features to drift.")
@click.option("--model", default=None, metavar="NAME",
              help="Rows like the reference of this model's champion instead "
              "(drawn from its profile; no target, no drift).")  # fmt: skip
def generate(
    scenario: str,
    rows: int,
    seed: int,
    out: Path,
    mode: str,
    drift_start: float,
    magnitude: float | None,
    features: str | None,
    model: str | None,
) -> None:
    """Write synthetic churn data, optionally with drift; or rows shaped like a
    model's reference data (--model). Same seed, same bytes."""
    if model is not None:
        if scenario != "baseline" or features or magnitude is not None:
            raise click.UsageError("drift options apply to the synthetic churn data, "
                                   "not to --model")  # fmt: skip
        settings = _model_settings(model)
        with migrated_sessions(settings) as factory, session_scope(factory) as session:
            champion = registry.get_champion(session, settings).model_version
            df = sample_rows(
                champion.reference_profile, champion.feature_names, rows, seed
            )
        synthetic.write(df, out)
        click.echo(f"wrote {len(df)} rows like model {model}'s reference to {out}")
        return
    chosen = tuple(f.strip() for f in features.split(",")) if features else None
    df = synthetic.generate(
        scenario,
        rows,
        seed,
        mode=mode,
        drift_start=drift_start,
        magnitude=magnitude,
        features=chosen,
    )
    synthetic.write(df, out)
    click.echo(f"wrote {len(df)} rows of {scenario} ({mode}) to {out}")


@main.command()
@click.option("--url", default=None, help="API to drive (default: this machine's).")
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 10_000),
    default=20.0,
    show_default=True,
    help="Predictions per second.",
)
@click.option(
    "--scenario",
    type=click.Choice(list(synthetic.SCENARIOS)),
    default=None,
    help="A fixed scenario; without it, follow the API's (POST /demo/drift).",
)
@click.option(
    "--duration",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Seconds to run.",
)
@click.option(
    "--label-delay",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="Seconds until each true label is sent as feedback.",
)
@click.option("--seed", type=int, default=1000, show_default=True)
@click.option("--model", default=None, metavar="NAME",
              help="Send to this model's route: synthetic rows with labels when "
              "it takes the synthetic features, else rows of its input "
              "schema.")  # fmt: skip
def simulate(
    url: str | None,
    rate: float,
    scenario: str | None,
    duration: float,
    label_delay: float,
    seed: int,
    model: str | None,
) -> None:
    """Send demo predictions, and their true labels later, to a running API."""
    settings = _settings()
    target = url or f"http://{settings.api_host}:{settings.api_port}"

    def report(tally: simulator.Tally) -> None:
        click.echo(
            f"sent {tally.sent} answered {tally.answered} failed {tally.failed} "
            f"labels {tally.labels} versions {dict(tally.versions)}"
        )

    simulator.simulate(
        target,
        rate=rate,
        scenario=scenario,
        duration=duration,
        label_delay=label_delay,
        seed=seed,
        api_key=settings.api_key or None,
        report=report,
        model=model,
    )


@main.command()
def init() -> None:
    """Migrate the database and train the demo model if the registry is empty."""
    system.prepare_database(_settings(quiet=False))


@main.command("config")
@click.option("--doc-table", is_flag=True, help="Print the settings table of the docs.")
def config_command(doc_table: bool) -> None:
    """Show the effective settings (the API key masked)."""
    if doc_table:
        click.echo("| variable | type | default | meaning |\n| --- | --- | --- | --- |")
        for env_name, kind, default, text in describe_settings():
            shown = "(derived)" if env_name in DERIVED else f"`{default!r}`"
            if env_name == "MODELOPS_ALERT_RULES":
                shown, kind = "(see docs/alerts.md)", "tables"
            click.echo(f"| `{env_name}` | {kind} | {shown} | {text} |")
        return
    settings = _settings()
    for name, value in sorted(dataclasses.asdict(settings).items()):
        if name == "alert_rules":
            value = ", ".join(rule["name"] for rule in value)
        if name == "api_key":
            value = "**** (set)" if value else system.describe_api_key(settings)
        elif name in SECRETS and value:
            value = "****"
        click.echo(f"MODELOPS_{name.upper()}={value}")


SECRETS = ("alert_webhook_secret", "flower_basic_auth")


DERIVED = ("MODELOPS_DATABASE_URL", "MODELOPS_ARTIFACT_DIR", "MODELOPS_DATA_DIR")


@main.command("datasets")
def datasets_command() -> None:
    """List the dataset names `train` accepts."""
    for name in list_datasets(_settings()):
        click.echo(name)


@main.group()
def models() -> None:
    """Models and their versions."""


@models.command("list")
def models_list() -> None:
    """Every model: task, champion, versions."""
    settings = _settings()
    with migrated_sessions(settings) as factory, session_scope(factory) as session:
        rows = catalog.list_models(session)
        if not rows:
            click.echo("no model is registered yet")
        for model in rows:
            scoped = settings.for_model(model.name)
            champion = registry.find_champion(session, scoped)
            count = len(registry.list_versions(session, scoped))
            serving = champion.model_version.version if champion else "-"
            mark = " (default)" if model.name == settings.default_model else ""
            click.echo(f"{model.name:<24} {model.task:<15} champion {serving!s:<5} "
                       f"versions {count}{mark}")  # fmt: skip


@models.command("versions")
@MODEL_OPTION
def models_versions(model: str | None) -> None:
    """A model's versions, newest first, with state and metrics."""
    settings = _model_settings(model)
    with migrated_sessions(settings) as factory, session_scope(factory) as session:
        catalog.get_model(session, settings.model_name)
        for v in registry.list_versions(session, settings):
            click.echo(f"{v.version:>4}  {v.state:<10} {v.model_type:<24} "
                       f"{_scores(v.task, v.metrics)}  {v.sha256[:12]}")  # fmt: skip


def _scores(task: str, metrics: dict[str, Any]) -> str:
    if task == "regression":
        return f"mae={metrics.get('mae', 0):.4g} r2={metrics.get('r2') or 0:.4f}"
    return (f"accuracy={metrics.get('accuracy', 0):.4f} "
            f"f1={metrics.get('f1_score', 0):.4f}")  # fmt: skip


@models.command("promote")
@click.argument("version", type=int)
@click.option("--reason", default="manual promotion from the CLI", show_default=True)
@MODEL_OPTION
def models_promote(version: int, reason: str, model: str | None) -> None:
    """Make VERSION the champion of --model."""
    settings = _model_settings(model)
    with migrated_sessions(settings) as factory, session_scope(factory) as session:
        champion = registry.promote_version(
            session, settings, version, reason=reason, actor="cli"
        )
        click.echo(f"version {version} of {settings.model_name} is champion "
                   f"(generation {champion.generation})")  # fmt: skip


@models.command("rollback")
@click.option("--reason", default="manual rollback from the CLI", show_default=True)
@MODEL_OPTION
def models_rollback(reason: str, model: str | None) -> None:
    """Serve the champion of --model before the current one again."""
    settings = _model_settings(model)
    with migrated_sessions(settings) as factory, session_scope(factory) as session:
        champion = registry.rollback(session, settings, reason=reason, actor="cli")
        click.echo(
            f"version {champion.model_version.version} of {settings.model_name} is "
            f"champion (generation {champion.generation})"
        )


@main.command()
@click.argument("name")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False))
@click.option("--reference", required=True, type=click.Path(exists=True,
              dir_okay=False), help="CSV or Parquet the model was made for, with the "
              "target column.")  # fmt: skip
@click.option("--target", required=True, help="The reference's target column.")
@click.option("--allow-pickle", is_flag=True,
              help="Accept a joblib or pickle file. Loading one runs any code it "
              "holds: only for files you trust like your own code.")  # fmt: skip
@click.option("--trust", "trusted", multiple=True, metavar="TYPE",
              help="A type to trust in a skops file (repeatable).")  # fmt: skip
@click.option("--promote", is_flag=True,
              help="Make it champion (a new model's first is).")  # fmt: skip
@click.option("--description", default=None, help="What the model is for.")
@click.option("--task", type=click.Choice(catalog.TASKS), default=None,
              help="Only when the estimator does not say.")  # fmt: skip
def register(
    name: str,
    artifact: str,
    reference: str,
    target: str,
    allow_pickle: bool,
    trusted: tuple[str, ...],
    promote: bool,
    description: str | None,
    task: str | None,
) -> None:
    """Register ARTIFACT (a skops file, or joblib/pickle with --allow-pickle) as a
    new version of model NAME."""
    settings = _settings()
    request = ImportRequest(
        name=name, artifact=Path(artifact), filename=Path(artifact).name,
        reference=Path(reference), target=target, allow_pickle=allow_pickle,
        trusted_types=trusted, promote=promote, description=description, task=task,
    )  # fmt: skip
    with migrated_sessions(settings) as factory, session_scope(factory) as session:
        done = register_file(session, settings, request)
        version = done.version
        click.echo(f"registered {name} version {version.version} ({version.task}, "
                   f"{version.model_type}); sha256 {version.sha256[:12]}")  # fmt: skip
        click.echo(f"  on the reference: {_scores(version.task, version.metrics)}")
        for warning in done.warnings:
            click.echo(f"  warning: {warning}")
        if done.promoted:
            click.echo(f"  version {version.version} is champion of {name}")


@main.command()
@click.option("--host", default=None, help="Address of the API and Flower.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="API port.")
@click.option("--flower-port", type=click.IntRange(0, 65535), default=None)
def up(host: str | None, port: int | None, flower_port: int | None) -> None:
    """Start Redis (unless MODELOPS_REDIS_URL is set), worker, beat, API and Flower."""
    overrides: dict[str, Any] = {}
    if host:
        overrides.update(api_host=host, flower_host=host)
    if port is not None:
        overrides["api_port"] = port
    if flower_port is not None:
        overrides["flower_port"] = flower_port
    settings = _settings(quiet=False, **overrides)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sys.exit(system.run_system(settings))


register_rollout_commands(main, MODEL_OPTION, _model_settings)

if __name__ == "__main__":
    main()
