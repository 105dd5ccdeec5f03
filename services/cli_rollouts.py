"""`modelops rollout`: start a shadow, canary or A/B rollout, watch its comparison,
promote or abort it, and list past ones (the same as the API's rollout routes)."""

from __future__ import annotations

from typing import Any

import click

from common.clock import utcnow
from common.config import Settings
from common.models import catalog
from common.rollouts import lifecycle
from common.rollouts.comparison import compare
from common.rollouts.criteria import MODES, Criteria
from common.rollouts.decisions import judge
from common.storage.db import session_scope
from common.storage.migrate import migrated_sessions

ACTOR = "cli"


def register_commands(main: click.Group, model_option: Any, settings_of: Any) -> None:
    """Add the `rollout` group to `main` (services/cli.py)."""

    @main.group()
    def rollout() -> None:
        """Rollouts: a challenger version judged beside the champion on live traffic."""

    @rollout.command("start")
    @click.argument("version", type=int)
    @click.option("--mode", type=click.Choice(MODES), required=True)
    @click.option("--share", type=float, default=None,
                  help="Share of requests (default: all for shadow, "
                  "MODELOPS_ROLLOUT_SHARE for canary, half for ab).")  # fmt: skip
    @click.option("--criterion", "criteria", multiple=True, metavar="NAME=VALUE",
                  help="A criterion, e.g. --criterion min_labels=500.")  # fmt: skip
    @model_option
    def start(version: int, mode: str, share: float | None,
              criteria: tuple[str, ...], model: str | None) -> None:  # fmt: skip
        """Put VERSION beside the champion of --model in --mode."""
        settings = settings_of(model)
        with migrated_sessions(settings) as factory, session_scope(factory) as session:
            started = lifecycle.start_rollout(
                session, settings, version=version, mode=mode, share=share,
                criteria=_criteria(criteria), actor=ACTOR,
            )  # fmt: skip
            click.echo(f"rollout {started.id}: {mode} of version {version} beside "
                       f"version {started.champion.version} of {settings.model_name}, "
                       f"share {started.share:g}")  # fmt: skip

    @rollout.command("status")
    @model_option
    def status(model: str | None) -> None:
        """The running rollout: both arms side by side, and the current verdict."""
        settings = settings_of(model)
        with migrated_sessions(settings) as factory, session_scope(factory) as session:
            running = lifecycle.get_running(session, settings.model_name)
            task = catalog.get_model(session, settings.model_name).task
            now = utcnow()
            comparison = compare(session, running, task, now)
            verdict = judge(running, comparison, Criteria(**running.criteria), now)
            click.echo(f"rollout {running.id}: {running.mode} of version "
                       f"{running.challenger.version}, share {running.share:g}, since "
                       f"{running.started_at:%Y-%m-%d %H:%M} UTC")  # fmt: skip
            for line in _arms(comparison, task):
                click.echo(line)
            click.echo(f"verdict: {verdict.decision}: {verdict.reason}")

    @rollout.command("promote")
    @click.option("--reason", default="promoted from the CLI", show_default=True)
    @model_option
    def promote(reason: str, model: str | None) -> None:
        """Make the running rollout's challenger the champion."""
        _decide(settings_of(model), "promote", reason)

    @rollout.command("abort")
    @click.option("--reason", default="aborted from the CLI", show_default=True)
    @model_option
    def abort(reason: str, model: str | None) -> None:
        """End the running rollout; the champion alone serves again."""
        _decide(settings_of(model), "abort", reason)

    @rollout.command("list")
    @model_option
    def list_rollouts(model: str | None) -> None:
        """Past and running rollouts of --model, newest first."""
        settings = settings_of(model)
        with migrated_sessions(settings) as factory, session_scope(factory) as session:
            rows = lifecycle.history(session, settings.model_name)
            if not rows:
                click.echo(f"{settings.model_name} has had no rollout")
            for row in rows:
                decided = (
                    f" by {row.decided_by}: {row.reason}" if row.decided_by else ""
                )
                click.echo(f"{row.id:>4}  {row.mode:<7} v{row.challenger.version:<4} "
                           f"{row.state:<9} {row.started_at:%Y-%m-%d %H:%M}"
                           f"{decided}")  # fmt: skip


def _decide(settings: Settings, action: str, reason: str) -> None:
    with migrated_sessions(settings) as factory, session_scope(factory) as session:
        decided = lifecycle.decide_by_hand(session, settings, action, actor=ACTOR,
                                           reason=reason)  # fmt: skip
        version = decided.challenger.version
        click.echo(f"rollout {decided.id} {decided.state}: version {version} of "
                   f"{settings.model_name}")  # fmt: skip


def _criteria(items: tuple[str, ...]) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator:
            raise click.BadParameter(
                f"{item!r} is not NAME=VALUE", param_hint="--criterion"
            )
        try:
            given[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number",
                                     param_hint="--criterion") from None  # fmt: skip
    return given


def _arms(comparison: dict[str, Any], task: str) -> list[str]:
    metric = "mae" if task == "regression" else "accuracy"
    lines = [f"{'arm':<11} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'labelled':>9} {metric:>22}"]  # fmt: skip
    for name, arm in comparison["arms"].items():
        latency = arm["latency_ms"]
        lines.append(
            f"{name:<11} {arm['requests']:>9} {arm['error_rate']['value'] or 0:>7.1%} "
            f"{_ms(latency['p50'])} {_ms(latency['p99'])} {arm['labelled']:>9} "
            f"{_interval(arm[metric], percent=metric == 'accuracy'):>22}"
        )
    difference = comparison["difference"]
    lines.append(f"difference (challenger - champion): "
                 f"{_interval(difference, percent=metric == 'accuracy')}")  # fmt: skip
    if "agreement" in comparison:
        agreement = comparison["agreement"]
        lines.append(f"agreement on the same rows: {_interval(agreement, True)} of "
                     f"{agreement['compared']}" if task != "regression" else
                     f"mean difference on the same rows: "
                     f"{agreement['mean_abs_difference']}")  # fmt: skip
    return lines


def _ms(value: float | None) -> str:
    return f"{value:>8.1f}" if value is not None else f"{'-':>8}"


def _interval(figure: dict[str, Any], percent: bool) -> str:
    if figure.get("value") is None:
        return "-"
    form = "{:.1%}" if percent else "{:.4g}"
    return (f"{form.format(figure['value'])} [{form.format(figure['low'])}, "
            f"{form.format(figure['high'])}]")  # fmt: skip
