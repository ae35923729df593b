"""`tagops rollout start|status|check|promote|abort`: prove the challenger on a share of live traffic."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tagops.cli.context import load_settings, read_config
from tagops.cli.exit_codes import ExitCode
from tagops.cli.output import command_group, print_json
from tagops.cli.params import number

if TYPE_CHECKING:
    from tagops.config import RolloutConfig
    from tagops.settings import Settings

rollout_app = command_group(
    "Canary rollout: the challenger answers a sticky share of live requests until it is promoted or "
    "aborted (the service at TAGOPS_RETRAIN_SERVICE_URL, with TAGOPS_RETRAIN_ADMIN_KEY)."
)
_CONFIG = typer.Option(help="Rollout config YAML (policy, gate, database, service URL).")


def _setup(config: Path | None) -> tuple[RolloutConfig, Settings]:
    from tagops.config import RolloutConfig

    cfg = read_config(RolloutConfig, config)
    try:
        return cfg, load_settings()
    except ValueError as error:  # a setting from the environment that does not validate
        raise typer.BadParameter(str(error)) from error


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(ExitCode.ERROR)


@rollout_app.command("start")
def start(
    weight: Annotated[
        float | None,
        typer.Option(parser=number(0.01, 100.0), metavar="<float>", help="Percent of requests (default 10)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="models:/NAME@ALIAS or models:/NAME/N (default: the challenger).")
    ] = None,
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """Start a rollout, or change the share of the running one; every replica follows."""
    from tagops.workloads.rollout import RolloutCommandError, service_call

    cfg, settings = _setup(config)
    body: dict[str, Any] = {"weight": weight if weight is not None else cfg.weight}
    if model or cfg.model_uri:
        body["model_uri"] = model or cfg.model_uri
    try:
        print_json(service_call("POST", "/v1/admin/rollout", cfg, settings, json=body))
    except RolloutCommandError as error:
        _fail(error)


@rollout_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """Champion and canary since the rollout started: requests, errors, latency, feedback F1, agreement."""
    from tagops.workloads.rollout import current_rollout, rollout_decision

    cfg, settings = _setup(config)
    report = current_rollout(cfg, settings)
    if not report:
        _fail(ValueError("no rollout in this database yet (`tagops rollout start`)"))
    if report["state"] == "active":
        report["decision"] = dict(
            zip(("action", "reason"), rollout_decision(report, cfg.policy), strict=True)
        )
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def number(value: Any, spec: str) -> str:
        return "" if value is None else format(value, spec)

    def interval(values: list[float] | None, spec: str) -> str:
        return "" if not values else f"[{format(values[0], spec)}, {format(values[1], spec)}]"

    table = Table(
        title=f"rollout {report['state']} since {report['started_at'][:19]}: weight {report['weight']:g} %, "
        f"canary share {report['canary_share']:.1%}"
    )
    for column in (
        "",
        "model",
        "requests",
        "error rate (95 %)",
        "p50 / p95 ms (95 %)",
        "labelled",
        "F1 (95 %)",
    ):
        table.add_column(column)
    for side in ("champion", "canary"):
        row = report[side]
        table.add_row(
            side,
            f"v{row['version']}" if row["version"] is not None else row["model_uri"],
            str(row["requests"]),
            f"{number(row['error_rate'], '.2%')} {interval(row['error_rate_ci95'], '.2%')}",
            f"{number(row['latency_ms']['p50'], '.1f')} / {number(row['latency_ms']['p95'], '.1f')} "
            f"{interval(row['latency_ms']['p95_ci95'], '.1f')}",
            str(row["labelled"]),
            f"{number(row['f1'], '.4f')} {interval(row['f1_ci95'], '.4f')}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"F1 canary − champion: {number(report['f1_difference'], '+.4f')} "
        f"{interval(report['f1_difference_ci95'], '+.4f')}; agreement in shadow: "
        + (
            f"{report['agreement']:.1%} of {report['agreement_rows']}"
            if report["agreement"] is not None
            else "n/a"
        )
    )
    if "decision" in report:
        console.print(f"policy: {report['decision']['action']} ({report['decision']['reason']})")
    elif report["reason"]:
        console.print(f"ended: {report['reason']}")


@rollout_app.command("check")
def check(
    apply: Annotated[
        bool, typer.Option(help="Act on the decision (promote or abort), else only print it.")
    ] = False,
    wait: Annotated[
        str | None,
        typer.Option(help="Check again until the policy decides or this long passed (e.g. 2h): for CD jobs."),
    ] = None,
    every: Annotated[str, typer.Option(help="With --wait: time between checks (e.g. 60s).")] = "60s",
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """Apply the rollout policy: promote when the canary is no worse at 95 % confidence, abort on a breach.

    With --wait the check repeats until the policy promotes or aborts, and the exit status says which:
    0 promoted, 4 aborted, 5 still undecided when the wait ended (the rollout keeps running).
    """
    import time

    from tagops.config import parse_period
    from tagops.workloads.rollout import RolloutCommandError, current_rollout, rollout_decision

    try:
        wait_s = parse_period(wait) if wait is not None else None
        every_s = parse_period(every)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    cfg, settings = _setup(config)
    deadline = time.monotonic() + (wait_s or 0.0)
    while True:
        report = current_rollout(cfg, settings)
        if not report or report["state"] != "active":
            _fail(ValueError("no rollout is active"))
        action, reason = rollout_decision(report, cfg.policy)
        if action != "continue" or wait_s is None or time.monotonic() + every_s > deadline:
            break
        typer.echo(f"rollout: {reason}; checking again in {every}", err=True)
        time.sleep(every_s)
    result: dict[str, Any] = {"action": action, "reason": reason, "applied": False}
    if apply and action != "continue":
        try:
            result["outcome"] = (
                _promote(cfg, settings, report, reason)
                if action == "promote"
                else _abort(cfg, settings, f"policy: {reason}")
            )
        except RolloutCommandError as error:
            _fail(error)
        result["applied"] = True
    print_json(result)
    if wait_s is not None and action != "promote":
        raise typer.Exit(ExitCode.REFUSED if action == "abort" else ExitCode.UNDECIDED)


def _abort(cfg: RolloutConfig, settings: Settings, reason: str) -> dict[str, Any]:
    from tagops.workloads.rollout import service_call

    return service_call("DELETE", "/v1/admin/rollout", cfg, settings, params={"reason": reason})


def _promote(cfg: RolloutConfig, settings: Settings, report: dict[str, Any], evidence: str) -> dict[str, Any]:
    """The holdout gate and the champion alias for the canary's version, then the service's reload."""
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.registry.client import Registry
    from tagops.workloads.promote import promote
    from tagops.workloads.rollout import RolloutCommandError, service_call

    version = report["canary"]["version"]
    if version is None:
        raise RolloutCommandError(f"{report['canary']['model_uri']} is not a registry version")
    snap = pull_stage(settings, cfg.train.data)
    _, holdout = validate_stage(snap)
    decision = promote(
        Registry(settings),
        holdout=holdout,
        eval_cfg=cfg.train.evaluation,
        gate=cfg.gate,
        history=settings.promotion_history,
        version=int(version),
        holdout_sha256=snap.holdout_sha256,
        trigger=f"canary rollout since {report['started_at']}: {evidence}",
    )
    if not decision.promote:
        raise RolloutCommandError(f"the holdout gate refused version {version}: {decision.reason}")
    return {"gate": decision.reason, "reload": service_call("POST", "/v1/admin/reload", cfg, settings)}


@rollout_app.command("promote")
def promote_cmd(config: Annotated[Path | None, _CONFIG] = None) -> None:
    """Make the canary champion now (holdout gate, alias, history), and reload: it serves every request."""
    from tagops.workloads.rollout import RolloutCommandError, current_rollout

    cfg, settings = _setup(config)
    report = current_rollout(cfg, settings)
    if not report or report["state"] != "active":
        _fail(ValueError("no rollout is active"))
    try:
        print_json(_promote(cfg, settings, report, "promoted by hand"))
    except RolloutCommandError as error:
        _fail(error)


@rollout_app.command("abort")
def abort(
    reason: Annotated[str, typer.Option(help="Why (kept with the rollout).")] = "aborted by hand",
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """Send every request to the champion again; the rollout's counts stay for the record."""
    from tagops.workloads.rollout import RolloutCommandError

    cfg, settings = _setup(config)
    try:
        print_json(_abort(cfg, settings, reason))
    except RolloutCommandError as error:
        _fail(error)
