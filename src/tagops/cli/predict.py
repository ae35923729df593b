"""`tagops predict`: one item to stdout, or a whole file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tagops.cli.context import load_settings
from tagops.cli.output import JsonFlag, print_json, stdout_to_stderr
from tagops.cli.params import ThresholdOption
from tagops.model_ref import DEFAULT_MODEL_URI


def predict(
    title: Annotated[str | None, typer.Option(help="Project title.")] = None,
    description: Annotated[str, typer.Option(help="Project description.")] = "",
    input_path: Annotated[Path | None, typer.Option("--input", help="CSV or JSONL file of items.")] = None,
    output: Annotated[Path | None, typer.Option(help="Where to write predictions for --input.")] = None,
    model: Annotated[
        str, typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a model folder.")
    ] = DEFAULT_MODEL_URI,
    threshold: ThresholdOption = None,
    engine: Annotated[
        str,
        typer.Option(
            help="For --input: local (this process), ray (Ray Data actor pool) or auto (ray for a "
            "transformer over a large file)."
        ),
    ] = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Predict one item (JSON to stdout) or a whole file (`--input` and `--output`).

    For a file, prints how many rows were predicted (`--json`: with the files and the engine); at a
    terminal, a bar on stderr follows the rows.
    """
    from tagops.inference.loading import load_predictor

    if (title is None) == (input_path is None):
        raise typer.BadParameter("give either --title (and --description) or --input with --output")
    if input_path is not None and output is None:
        raise typer.BadParameter("--input needs --output")
    if title is not None and not (title.strip() or description.strip()):
        raise typer.BadParameter("empty title and description", param_hint="--title")
    if engine not in ("auto", "local", "ray"):  # refused before the model loads, for one item too
        raise typer.BadParameter(f"{engine!r}: use auto, local or ray", param_hint="'--engine'")
    if input_path is not None and output is not None:
        from tagops.inference.predictor import check_output

        check_output(output)  # refused before the model loads, with nothing predicted
    settings = load_settings()
    predictor = load_predictor(model, settings, threshold=threshold)
    if title is not None:
        result = predictor.predict([title], [description])[0]
        print_json({**result, "model": predictor.describe()})
        return
    assert input_path is not None and output is not None
    from tagops.cli.progress import CommandProgress, wanted
    from tagops.workloads import batch

    chosen = batch.choose_engine(engine, predictor, input_path)
    with CommandProgress(enabled=wanted(json_output=as_json)) as progress, stdout_to_stderr():
        count = batch.predict_file(
            predictor, input_path, output, settings, engine=chosen, on_progress=progress.counter("rows")
        )
    if as_json:
        print_json({"input": str(input_path), "output": str(output), "predictions": count, "engine": chosen})
        return
    typer.echo(f"{output}: {count} predictions")
