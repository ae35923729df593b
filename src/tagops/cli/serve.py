"""Serving commands: serve, `tagops keys`, log-replay and log-prune."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tagops.cli import logs
from tagops.cli.context import load_settings, read_config
from tagops.cli.output import JsonFlag, command_group, print_json
from tagops.cli.params import number
from tagops.errors import TagopsError

if TYPE_CHECKING:
    from tagops.serving.profile import Choice

keys_app = command_group("Manage the API keys of the prediction API.")
logger = logging.getLogger("tagops.cli")


def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: the config's, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: the config's, 8000).")] = None,
    engine: Annotated[
        str | None, typer.Option(help="ray (Ray Serve, batched replicas) or uvicorn (this process).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Serving config YAML (configs/serve.yaml).")] = None,
    model: Annotated[
        str | None, typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a model folder.")
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="Ray Serve replicas (default: the config's).")] = None,
    print_serve_config: Annotated[
        bool, typer.Option(help="Print the Ray Serve config (serve deploy / RayService) and exit.")
    ] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            envvar="TAGOPS_LOG_FORMAT",
            help="Log lines: text, or json (one object per line, with the request id) for a log collector; "
            "also TAGOPS_LOG_FORMAT (default: the config's, text).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="When ready, print url, docs, model and engine as one JSON line on stdout "
            "(with --print-serve-config: the config as JSON).",
        ),
    ] = False,
) -> None:
    """Serve the prediction API; prints its URL. The prediction log database: TAGOPS_SERVE_DATABASE_URL.

    The server runs until Ctrl-C or SIGTERM and its log lines stream on stderr; with `--log-format json`
    every line it writes is JSON (the ready message too, unless `--json` prints it on stdout).
    """
    from tagops.config import ServeConfig

    try:
        cfg = read_config(
            ServeConfig,
            config,
            host=host,
            port=port,
            engine=engine,
            model_uri=model,
            num_replicas=replicas,
            log_format=log_format,
        )
    except ValueError as error:  # a pydantic ValidationError names every bad field
        raise typer.BadParameter(str(error)) from error
    if print_serve_config:
        from tagops.serving.ray.deployment import serve_deploy_config

        if as_json:
            print_json(serve_deploy_config(cfg))
            return
        import yaml

        typer.echo(yaml.safe_dump(serve_deploy_config(cfg), sort_keys=False))
        return
    from tagops.serving.ray.server import run_ray
    from tagops.serving.server import run_uvicorn

    structured = cfg.log_format == "json"
    if structured:
        logs.use_json_format()

    def ready(url: str, uri: str) -> None:
        if as_json:  # one line, so a script reads it as the server starts (e.g. the port --port 0 took)
            typer.echo(json.dumps({"url": url, "docs": f"{url}/docs", "model": uri, "engine": cfg.engine}))
        elif structured:
            logger.info("serving %s with %s at %s (docs: %s/docs)", uri, cfg.engine, url, url)
        else:
            typer.echo(f"serving {uri} with {cfg.engine} at {url} (docs: {url}/docs); Ctrl-C stops")

    def fitted(choices: list[Choice]) -> None:
        for choice in choices:
            if structured:
                logger.info("%s: %s", choice.source, choice.line())
            else:
                typer.echo(f"{choice.source:>6}: {choice.line()}", err=True)

    settings = load_settings()
    runner = run_ray if cfg.engine == "ray" else run_uvicorn
    runner(cfg, settings, on_ready=ready, on_fitted=fitted)


def _key_store(config: Path | None) -> Any:
    from tagops.config import ServeConfig
    from tagops.serving.keys import KeyStore

    return KeyStore.from_config(read_config(ServeConfig, config), load_settings())


_KEYS_CONFIG = typer.Option(help="Serving config YAML whose database holds the keys.")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    role: Annotated[
        str,
        typer.Option(
            help="client: predict and feedback that waits for review; labeller: feedback trusted for "
            "training; admin: also reload."
        ),
    ] = "client",
    admin: Annotated[bool, typer.Option(help="Shorthand for --role admin.")] = False,
    config: Annotated[Path | None, _KEYS_CONFIG] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; prints it once (only a salted hash is stored)."""
    from tagops.serving.keys import ApiKeyError

    try:
        record, token = _key_store(config).create(name, "admin" if admin else role)  # type: ignore[arg-type]
    except ApiKeyError as error:  # a role or a name the store does not take: a usage error
        raise typer.BadParameter(str(error)) from None
    if as_json:
        print_json({**_key_json(record), "token": token})
        return
    typer.echo(f"created key {record.key_id} ({record.role}) for {record.name!r}; store it now:", err=True)
    typer.echo(token)


def _key_json(key: Any) -> dict[str, Any]:
    """What is stored about a key (never the secret), as JSON."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "role": key.role,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@keys_app.command("list")
def keys_list(config: Annotated[Path | None, _KEYS_CONFIG] = None, as_json: JsonFlag = False) -> None:
    """Every key with its role and whether it is revoked (never the key itself)."""
    keys = _key_store(config).list()
    if as_json:
        print_json([_key_json(key) for key in keys])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="API keys")
    for column in ("id", "name", "role", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.key_id,
            key.name,
            key.role,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `tagops keys list`).")],
    config: Annotated[Path | None, _KEYS_CONFIG] = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key (servers stop accepting it within key_cache_ttl_s)."""
    key = _key_store(config).revoke(key_id)
    if as_json:
        print_json(_key_json(key))
        return
    typer.echo(f"revoked key {key.key_id} ({key.name!r})")


def log_replay(
    config: Annotated[
        Path | None, typer.Option(help="Serving config YAML whose database gets the rows.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the prediction log rows left in this host's journal to the database.

    A serving process does this itself when it starts and every 30 s; this command is for rows left
    when no server runs any more (the database was down when the last one stopped). Segments that a
    running server still holds are left to it. Replaying twice writes nothing twice.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tagops.config import ServeConfig
    from tagops.predlog.engine import safe_url
    from tagops.predlog.log import PredictionLog

    log = PredictionLog.from_config(read_config(ServeConfig, config), load_settings(), journal=True)
    writers = (log.writer, log.shadow_writer())
    try:
        log.create_tables()
        counts = {each.table.name: each.recover() for each in writers}
    except SQLAlchemyError as error:
        reason = error.args[0] if error.args else error
        raise TagopsError(f"{safe_url(log.url)}: {type(error).__name__}: {reason}") from None
    finally:
        log.dispose()
    files = [each.journal.files() for each in writers if each.journal is not None]
    left, bad = (sum(found[kind] for found in files) for kind in ("segment", "bad"))
    if as_json:
        print_json(
            {
                "database": safe_url(log.url),
                "journal": str(log.options.journal_dir),
                "predictions": counts["predictions"],
                "shadow_predictions": counts["shadow_predictions"],
                "held_segments": left,
                "bad_segments": bad,
            }
        )
        return
    typer.echo(
        f"{counts['predictions']} prediction rows and {counts['shadow_predictions']} shadow rows written "
        f"to {safe_url(log.url)} from {log.options.journal_dir}"
    )
    if left:
        typer.echo(f"{left} segments held by running servers, left to them", err=True)
    if bad:
        typer.echo(f"{bad} segments set aside as unreadable (*.bad): inspect them by hand", err=True)


def log_prune(
    config: Annotated[
        Path | None, typer.Option(help="Serving config YAML: its database and log_retention_* limits.")
    ] = None,
    older_than_days: Annotated[
        float | None,
        typer.Option(
            parser=number(0.0, above=True),
            metavar="<float>",
            help="Delete predictions older than this (default: the config's).",
        ),
    ] = None,
    keep_rows: Annotated[
        int | None, typer.Option(min=0, help="Keep only the newest this many (default: the config's).")
    ] = None,
) -> None:
    """Delete old predictions from the prediction log now; prints what was deleted and what is left as JSON.

    A running server does this once an hour with its config's limits. Predictions that received feedback
    are kept whatever their age (retraining needs their text); shadow answers go with their prediction.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tagops.config import ServeConfig
    from tagops.predlog.engine import safe_url
    from tagops.predlog.log import PredictionLog
    from tagops.predlog.retention import RetentionPolicy

    cfg = read_config(ServeConfig, config)
    # The options' parsers and the config's fields hold what the policy takes (a positive age, rows >= 0).
    policy = RetentionPolicy(
        max_age_days=cfg.log_retention_days if older_than_days is None else older_than_days,
        max_rows=cfg.log_retention_rows if keep_rows is None else keep_rows,
    )
    log = PredictionLog.from_config(cfg, load_settings(), journal=False)
    try:
        log.create_tables()
        result = log.prune(policy)
        size = log.measure()
    except SQLAlchemyError as error:
        reason = error.args[0] if error.args else error
        raise TagopsError(f"{safe_url(log.url)}: {type(error).__name__}: {reason}") from None
    finally:
        log.dispose()
    print_json(
        {
            "database": safe_url(log.url),
            "max_age_days": policy.max_age_days,
            "max_rows": policy.max_rows,
            "deleted_predictions": result.predictions,
            "deleted_shadow_predictions": result.shadow_predictions,
            "predictions": size.predictions,
            "shadow_predictions": size.shadow_predictions,
            "bytes": size.bytes,
        }
    )


def log_migrate(
    to: Annotated[
        str,
        typer.Option(
            envvar="TAGOPS_LOG_MIGRATE_TO",
            help="SQLAlchemy URL of the database to move the log to, e.g. postgresql://user@host/tagops "
            "(or TAGOPS_LOG_MIGRATE_TO, which keeps a password out of the shell's history).",
        ),
    ],
    config: Annotated[
        Path | None, typer.Option(help="Serving config YAML whose database is the source.")
    ] = None,
) -> None:
    """Copy the prediction log (predictions, feedback, reviews, shadow answers, API keys) to another database.

    Rows the target already holds are kept, so an interrupted migration is run again to finish it; each
    table's row count and checksum must then match, or the command fails naming the table. The source
    is only read. Point the servers at the target afterwards (``TAGOPS_SERVE_DATABASE_URL``).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tagops.config import ServeConfig
    from tagops.predlog.engine import create_log_engine, safe_url
    from tagops.predlog.log import PredictionLog
    from tagops.predlog.migrate import migrate_log

    source = PredictionLog.from_config(read_config(ServeConfig, config), load_settings(), journal=False)
    if source.url == to:
        raise typer.BadParameter("the target is the source database", param_hint="--to")
    target = create_log_engine(to)
    try:
        source.create_tables()
        summary = migrate_log(source.engine, target)
    except SQLAlchemyError as error:
        reason = error.args[0] if error.args else error
        raise TagopsError(f"{type(error).__name__}: {reason}") from None
    finally:
        source.dispose()
        target.dispose()
    print_json({"source": safe_url(source.url), "target": safe_url(to), "tables": summary})
