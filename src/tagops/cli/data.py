"""`tagops data`: get, validate and explore the data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tagops.cli.context import load_settings
from tagops.cli.output import command_group

data_app = command_group("Get, validate and explore the data.")


@data_app.command("pull")
def data_pull(
    mirror: Annotated[Path | None, typer.Option(help="Copy from this folder instead of downloading.")] = None,
) -> None:
    """Fetch the four data files, verify their sha256 and store them read-only under TAGOPS_HOME."""
    from tagops.data.ingest import pull_data

    settings = load_settings()
    paths = pull_data(settings.data_dir, mirror=mirror or settings.data_mirror, base_url=settings.data_url)
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")


@data_app.command("validate")
def data_validate(
    path: Annotated[Path, typer.Argument(help="CSV file to check.")],
    against: Annotated[
        Path | None, typer.Option(help="Also check leakage (shared ids or texts) with this file.")
    ] = None,
    unlabelled: Annotated[bool, typer.Option(help="The file has no 'tag' column.")] = False,
) -> None:
    """Check a file against the data contract; every violation is printed with file, row and column."""
    from tagops.data.validate import check_no_leakage, load_projects

    frame = load_projects(path, labelled=not unlabelled)
    if against is not None:
        other = load_projects(against, labelled=not unlabelled)
        check_no_leakage(frame, other, file=str(path), other_file=str(against))
    typer.echo(f"{path}: {len(frame)} rows valid" + (f", no leakage with {against}" if against else ""))


@data_app.command("explore")
def data_explore(
    data: Annotated[Path | None, typer.Option(help="Labelled CSV (default: the pulled dataset.csv).")] = None,
    output: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
) -> None:
    """Write an HTML report: class balance, text length per class, top terms per class."""
    from tagops.config import DataConfig
    from tagops.data.explore import write_explore_report
    from tagops.data.stages import pull_stage
    from tagops.data.validate import load_projects

    settings = load_settings()
    path = data or pull_stage(settings, DataConfig()).dataset_path
    target = output or settings.reports_dir / f"explore-{path.stem}.html"
    write_explore_report(load_projects(path), target, title=f"Exploring {path.name}")
    typer.echo(str(target))
