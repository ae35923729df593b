"""The `tagops` command line: the one place that configures logging and prepares the environment.

Heavy libraries (pandas, scikit-learn, mlflow, zenml, ray, torch) are imported inside commands, so
`tagops --help` answers at once.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tagops.cli import data, feedback, logs, loop, models, pipeline, predict, rollout, serve, submit, team
from tagops.cli.exit_codes import ExitCode, summary
from tagops.cli.output import command_group
from tagops.errors import DataError, TagopsError, first_line

app = command_group(
    "tagops: tag ML projects with their topic, end to end.",
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=f"Exit status: {summary()} (docs/reference/cli.md says when).",
)
app.command()(models.train)
app.command()(models.evaluate)
app.command()(predict.predict)
app.command()(models.tune)
app.command("promote")(models.promote_cmd)
app.command("gate")(models.gate_cmd)
app.command()(models.rollback)
app.command()(loop.monitor)
app.command()(loop.retrain)
app.command()(loop.simulate)
app.command()(serve.serve)
app.command("log-replay")(serve.log_replay)
app.command("log-prune")(serve.log_prune)
app.command("log-migrate")(serve.log_migrate)
app.add_typer(data.data_app, name="data")
app.add_typer(pipeline.pipeline_app, name="pipeline")
app.add_typer(models.models_app, name="models")
app.add_typer(serve.keys_app, name="keys")
app.add_typer(loop.shadow_app, name="shadow")
app.add_typer(loop.loop_app, name="loop")
app.add_typer(feedback.feedback_app, name="feedback")
app.add_typer(rollout.rollout_app, name="rollout")
app.add_typer(team.team_app, name="team")
app.add_typer(submit.submit_app, name="submit")


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Configure logging once for every command."""
    logs.configure(verbose=verbose)


def main() -> None:
    """Console entry point: clean one-line errors for bad input, non-zero exit codes."""
    try:
        app()
    except DataError as error:
        for violation in error.violations:
            typer.echo(f"error: {violation}", err=True)
        sys.exit(ExitCode.ERROR)
    except TagopsError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(ExitCode.ERROR)
    except Exception as error:
        reason = database_failure(error)
        if reason is None:
            raise
        typer.echo(f"error: {reason}", err=True)
        sys.exit(ExitCode.ERROR)


def database_failure(error: BaseException) -> str | None:
    """A database that cannot be reached or used (the prediction log's), in one line; else ``None``.

    Only SQLAlchemy's ``OperationalError`` (a refused connection, a failed login, a locked or unreadable
    file) counts: anything else is a fault to see whole. SQLAlchemy is looked up, not imported, since a
    command that never opened a database has none to report.
    """
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None or not isinstance(error, exc.OperationalError):
        return None
    return f"the database cannot be used: {first_line(error.orig or error)}"
