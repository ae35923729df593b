"""`tagops data`: get, validate and explore the data; build the warehouse and compare its snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tagops.cli.context import load_settings, read_config
from tagops.cli.output import JsonFlag, command_group, output_file, print_json
from tagops.cli.params import SeedOption

data_app = command_group("Get, validate and explore the data; build the warehouse and its snapshots.")


@data_app.command("pull")
def data_pull(
    mirror: Annotated[Path | None, typer.Option(help="Copy from this folder instead of downloading.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Fetch the four data files, verify their sha256 and store them read-only under TAGOPS_HOME."""
    from tagops.data.ingest import pull_data

    settings = load_settings()
    paths = pull_data(settings.data_dir, mirror=mirror or settings.data_mirror, base_url=settings.data_url)
    if as_json:
        print_json({name: str(path) for name, path in paths.items()})
        return
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")


@data_app.command("validate")
def data_validate(
    path: Annotated[Path, typer.Argument(help="CSV file to check.")],
    against: Annotated[
        Path | None, typer.Option(help="Also check leakage (shared ids or texts) with this file.")
    ] = None,
    unlabelled: Annotated[bool, typer.Option(help="The file has no 'tag' column.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check a file against the data contract; every violation is printed with file, row and column."""
    from tagops.data.validate import check_no_leakage, load_projects

    frame = load_projects(path, labelled=not unlabelled)
    if against is not None:
        other = load_projects(against, labelled=not unlabelled)
        check_no_leakage(frame, other, file=str(path), other_file=str(against))
    if as_json:
        print_json({"path": str(path), "rows": len(frame), "against": str(against) if against else None})
        return
    typer.echo(f"{path}: {len(frame)} rows valid" + (f", no leakage with {against}" if against else ""))


@data_app.command("explore")
def data_explore(
    data: Annotated[Path | None, typer.Option(help="Labelled CSV (default: the pulled dataset.csv).")] = None,
    output: Annotated[Path | None, typer.Option(help="HTML file to write.", callback=output_file)] = None,
    as_json: JsonFlag = False,
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
    if as_json:
        print_json({"report": str(target)})
        return
    typer.echo(str(target))


@data_app.command("build")
def data_build(
    as_json: JsonFlag = False,
    feedback: Annotated[
        bool, typer.Option(help="Add the prediction log's trusted feedback to the training set.")
    ] = True,
    source_dir: Annotated[
        Path | None,
        typer.Option(help="Read the four CSV files from this folder as they are (default: pull and verify)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Loop or retrain config YAML: the feedback's database and recent window."),
    ] = None,
) -> None:
    """Build the warehouse from the raw files and the feedback, test every table, write a snapshot."""
    from tagops.config import RetrainConfig
    from tagops.warehouse.build import build_snapshot

    retrain = read_config(RetrainConfig, config)
    snapshot = build_snapshot(load_settings(), feedback=feedback, source_dir=source_dir, retrain=retrain)
    if as_json:
        print_json(snapshot.to_json())
        return
    lineage = snapshot.lineage
    state = "new" if snapshot.created else "unchanged: the same rows as before, nothing written"
    typer.echo(f"snapshot {snapshot.snapshot_id} ({state})")
    for table, entry in lineage.tables.items():
        extra = f" ({lineage.feedback.training_rows} from feedback)" if table == "training_set" else ""
        typer.echo(f"  {table:<17} {entry.rows:>6} rows{extra}")
    typer.echo(f"built in {snapshot.seconds:.2f} s: {snapshot.path}")


@data_app.command("snapshots")
def data_snapshots(as_json: JsonFlag = False) -> None:
    """List the warehouse's snapshots, oldest first: rows per table (--json: with the whole lineage)."""
    from tagops.warehouse.snapshots import list_snapshots

    snapshots = list_snapshots(load_settings())
    if as_json:
        print_json([lineage.to_json() for lineage in snapshots])
        return
    if not snapshots:
        typer.echo("no snapshots yet: `tagops data build` makes one")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="warehouse snapshots")
    table.add_column("snapshot", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for column in ("training", "feedback", "holdout"):
        table.add_column(column, justify="right")
    for lineage in snapshots:
        table.add_row(
            lineage.snapshot_id,
            lineage.created_at.replace("T", " ")[:16],
            str(lineage.rows("training_set")),
            str(lineage.feedback.training_rows),
            str(lineage.rows("holdout")),
        )
    Console().print(table)


@data_app.command("diff")
def data_diff(
    a: Annotated[str, typer.Argument(help="The older snapshot: an id, a unique prefix of one, or 'latest'.")],
    b: Annotated[str, typer.Argument(help="The newer snapshot.")],
    as_json: JsonFlag = False,
) -> None:
    """Rows added, removed, relabelled and with changed text between two snapshots, per table."""
    from tagops.warehouse.snapshots import diff_snapshots

    diff = diff_snapshots(load_settings(), a, b)
    if as_json:
        print_json(diff.to_json())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{diff.a} -> {diff.b}")
    table.add_column("table", no_wrap=True)
    for column in ("rows A", "rows B", "added", "removed", "relabelled", "text changed"):
        table.add_column(column, justify="right")
    for e in diff.tables:
        counts = (e.rows_a, e.rows_b, e.added, e.removed, e.relabelled, e.text_changed)
        table.add_row(e.table, *map(str, counts))
    console = Console()
    console.print(table)
    for entry in diff.tables:
        for change, rows in entry.examples.items():
            for row in rows:
                tags = (
                    f"{row['tag_a']} -> {row['tag_b']}"
                    if change == "relabelled"
                    else row["tag_b"] or row["tag_a"]
                )
                console.print(
                    f"  {entry.table} {change}: id {row['id']} {row['title']!r} ({tags})", markup=False
                )


@data_app.command("audit")
def data_audit(
    data: Annotated[Path | None, typer.Option(help="Labelled CSV (default: the pulled dataset.csv).")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Train config YAML whose model scores the rows (default: the linear model)."),
    ] = None,
    folds: Annotated[
        int, typer.Option(min=2, help="Folds: each row is scored by a model fitted on the others.")
    ] = 5,
    seed: SeedOption = 1234,
    disagreements: Annotated[
        bool,
        typer.Option(
            "--disagreements",
            help="Also list every row whose out-of-fold top tag differs from its tag (marked '?').",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(help="Also write the suspect rows to this CSV file, for review.", callback=output_file),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Rows whose tag is likely wrong, by confident learning on out-of-fold predictions; changes nothing."""
    from tagops.config import DataConfig, TrainConfig
    from tagops.data.stages import pull_stage
    from tagops.data.validate import load_projects
    from tagops.workloads.audit import audit_labels, write_suspects

    params = read_config(TrainConfig, config).model
    path = data or pull_stage(load_settings(), DataConfig()).dataset_path
    audit = audit_labels(
        load_projects(path), params, file=str(path), folds=folds, seed=seed, disagreements=disagreements
    )
    if output is not None:
        write_suspects(audit, output)
    if as_json:
        print_json(audit.to_dict())
        return
    typer.echo(
        f"suspect tags in {path}, most suspect first:" if audit.suspects else f"{path}: no suspect tags"
    )
    for s in audit.suspects:
        typer.echo(
            f"{'  ' if s.confident else '? '}row {s.row} (id {s.id}) {s.tag}: likelier {s.suggested}"
            f" ({s.p_suggested:.2f} against {s.p_given:.2f}): {s.title}"
        )
    flips = ", ".join(
        f"{given} -> {true} {n}" for given, row in audit.estimated_flips.items() for true, n in row.items()
    )
    flagged = sum(s.confident for s in audit.suspects)
    listed = f" ({len(audit.suspects) - flagged} more where the model disagrees)" if disagreements else ""
    typer.echo(
        f"{flagged} of {audit.rows} rows flagged{listed}; estimated wrong tags"
        f" {audit.estimated_noise:.1%} ({flips or 'none'}); out-of-fold weighted F1 of the"
        f" {audit.family} model {audit.out_of_fold_f1:.3f}"
    )
    if output is not None:
        typer.echo(f"suspects written to {output}")
