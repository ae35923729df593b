"""`tagops team up|down|env`: the team stack on one machine, for trying it.

An MLflow tracking server on PostgreSQL, and the prediction log on PostgreSQL.

``up`` creates two databases on the PostgreSQL server it is given (``<prefix>_mlflow`` for MLflow's
backend store, ``<prefix>_log`` for the prediction log, feedback and keys) if they do not exist, applies
the log's migrations, starts ``mlflow server`` with a shared artifact root under ``TAGOPS_HOME/team`` in
a session of its own, waits until it answers, and prints the environment every tagops process of the team
then uses (``eval "$(tagops team up)"``); the same lines are kept in ``TAGOPS_HOME/team/env`` (0600).
``down`` stops the server. In production each piece runs on its own (docs/serving.md, Team deployment).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tagops.cli.context import load_settings
from tagops.cli.output import JsonFlag, command_group, print_json
from tagops.cli.params import number
from tagops.errors import TagopsError

team_app = command_group("A team stack on one host: MLflow on PostgreSQL, and the prediction log there.")


def _folder() -> Path:
    folder: Path = load_settings().home / "team"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _ensure_database(server: str, name: str) -> str:
    """``server``/``name``, created if missing (the server's URL names no database, or ``postgres``)."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    url = make_url(server)
    admin = url.set(drivername="postgresql", database=url.database or "postgres")
    try:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as error:
        raise TagopsError(f"{admin.render_as_string(hide_password=True)}: {error}") from None
    return url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


def _environment(lines: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines as a mapping (the team's environment, for ``--json``)."""
    found = {}
    for line in lines.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name and value:
            found[name.strip()] = value.strip()
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@team_app.command("up")
def up(
    postgres: Annotated[
        str,
        typer.Option(envvar="TAGOPS_TEAM_POSTGRES", help="The PostgreSQL server (its URL, any database)."),
    ] = "postgresql://127.0.0.1:5432/postgres",
    prefix: Annotated[
        str, typer.Option(help="Names of the two databases: PREFIX_mlflow, PREFIX_log.")
    ] = "tagops",
    port: Annotated[int, typer.Option(min=0, max=65535, help="MLflow's port (0: a free one).")] = 5000,
    timeout: Annotated[
        float,
        typer.Option(parser=number(1.0), metavar="<float>", help="Seconds to wait for MLflow to answer."),
    ] = 180.0,
    as_json: JsonFlag = False,
) -> None:
    """Start MLflow on PostgreSQL and prepare the log's database; prints the team's environment.

    `--json` prints the environment as an object, with the server's pid and whether it already ran.
    """
    import urllib.request

    from tagops.predlog.engine import create_log_engine
    from tagops.predlog.schema import create_tables
    from tagops.serving.server import free_port

    folder = _folder()
    pid_file = folder / "mlflow.pid"
    if pid_file.is_file() and _alive(int(pid_file.read_text())):
        lines = (folder / "env").read_text(encoding="utf-8")
        if as_json:
            running = {"pid": int(pid_file.read_text()), "already_running": True}
            print_json({"env": _environment(lines), **running})
            return
        typer.echo(lines, nl=False)
        typer.echo(f"the team stack already runs (pid {pid_file.read_text()})", err=True)
        return
    backend = _ensure_database(postgres, f"{prefix}_mlflow")
    log_url = _ensure_database(postgres, f"{prefix}_log")
    engine = create_log_engine(log_url)
    create_tables(engine)
    engine.dispose()
    port = port or free_port()
    artifacts = folder / "artifacts"
    artifacts.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    with (folder / "mlflow.log").open("ab") as log:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
                *(
                    "--backend-store-uri",
                    backend,
                    "--artifacts-destination",
                    str(artifacts),
                    "--workers",
                    "1",
                ),
            ],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives this command; `tagops team down` stops its group
        )
    pid_file.write_text(str(server.pid), encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server.pid)
            pid_file.unlink(missing_ok=True)
            raise TagopsError(f"mlflow server did not start; see {folder / 'mlflow.log'}")
        time.sleep(0.5)
    lines = f"export MLFLOW_TRACKING_URI={url}\nexport TAGOPS_SERVE_DATABASE_URL={log_url}\n"
    env_file = folder / "env"
    env_file.touch(mode=0o600)
    env_file.write_text(lines, encoding="utf-8")
    if as_json:
        print_json({"env": _environment(lines), "pid": server.pid, "already_running": False})
        return
    typer.echo(lines, nl=False)
    typer.echo(f"team stack up: MLflow at {url} (pid {server.pid}), log in {prefix}_log", err=True)


def _stop(pid: int, timeout_s: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):  # reap it when this process started it
            os.waitpid(pid, os.WNOHANG)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


@team_app.command("down")
def down(as_json: JsonFlag = False) -> None:
    """Stop the team's MLflow server (the databases and artifacts stay).

    `--json` prints `{"stopped": PID}`, with `null` when no server was running.
    """
    folder = _folder()
    pid_file = folder / "mlflow.pid"
    if not pid_file.is_file():
        if as_json:
            print_json({"stopped": None})
            return
        typer.echo("the team stack is not running", err=True)
        return
    pid = int(pid_file.read_text())
    _stop(pid)
    pid_file.unlink()
    if as_json:
        print_json({"stopped": pid})
        return
    typer.echo("team stack down", err=True)


@team_app.command("env")
def env(as_json: JsonFlag = False) -> None:
    """Print the team's environment (as `up` printed it)."""
    path = _folder() / "env"
    if not path.is_file():
        raise TagopsError("no team stack here: run `tagops team up`")
    lines = path.read_text(encoding="utf-8")
    if as_json:
        print_json(_environment(lines))
        return
    typer.echo(lines, nl=False)
