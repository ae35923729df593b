"""The command line: help, data validation messages, local-model prediction and evaluation, usage errors."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pandas as pd
import pytest
from typer.testing import CliRunner

from tagops import LABELS
from tagops.cli import app, main
from tagops.data.robustness import TRANSFORMS
from tagops.errors import DataError

from .conftest import fit_rules_model, make_projects, write_csv
from .test_robustness import patch_load_challenge

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("restore_process_state", "tagops_home")]

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_rules_model(tmp_path_factory.mktemp("cli-model") / "rules")


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Call the console entry point as `tagops ARGS` and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tagops", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1 if code else 0), out, err


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "train", "evaluate", "predict", "promote", "rollback", "models", "pipeline"):
        assert command in result.stdout
    data_help = runner.invoke(app, ["data", "--help"])
    for command in ("pull", "validate", "explore"):
        assert command in data_help.stdout


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "predict" in result.output


def test_validate_good_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "good.csv", make_projects(3))
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: 12 rows valid" in result.stdout


def test_validate_bad_file_raises_data_error_in_app(tmp_path: Path) -> None:
    frame = make_projects(3)
    frame.loc[2, "tag"] = "robotics"
    path = write_csv(tmp_path / "bad.csv", frame)
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)


def test_validate_bad_file_prints_one_line_per_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = make_projects(3)
    frame.loc[2, "tag"] = "robotics"
    frame.loc[4, "created_on"] = "someday"
    path = write_csv(tmp_path / "bad.csv", frame)
    code, out, err = run_main(monkeypatch, capsys, "data", "validate", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"error: {path}, row 3, column 'tag': ")
    assert lines[1].startswith(f"error: {path}, row 5, column 'created_on': ")
    assert len(lines) == 2
    assert "Traceback" not in out + err


def test_validate_against_reports_leakage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train = make_projects(4)
    holdout = make_projects(2, start_id=500, offset=30)
    holdout.loc[1, "id"] = train.loc[6, "id"]
    train_path, holdout_path = (
        write_csv(tmp_path / "train.csv", train),
        write_csv(tmp_path / "holdout.csv", holdout),
    )
    code, _, err = run_main(
        monkeypatch, capsys, "data", "validate", str(holdout_path), "--against", str(train_path)
    )
    assert code == 1
    assert f"error: {holdout_path}, row 2, column 'id': " in err
    assert f"also in {train_path} row 7 (leakage)" in err


def test_validate_against_clean_pair(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", make_projects(4))
    holdout = write_csv(tmp_path / "holdout.csv", make_projects(2, start_id=500, offset=30))
    result = runner.invoke(app, ["data", "validate", str(holdout), "--against", str(train)])
    assert result.exit_code == 0, result.output
    assert f"no leakage with {train}" in result.stdout


def test_validate_unlabelled(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "new.csv", make_projects(2).drop(columns=["tag"]))
    assert runner.invoke(app, ["data", "validate", str(path)]).exit_code != 0
    result = runner.invoke(app, ["data", "validate", "--unlabelled", str(path)])
    assert result.exit_code == 0, result.output


def test_predict_one_item_prints_json(model_dir: Path, tagops_home: Path) -> None:
    result = runner.invoke(
        app,
        [
            "predict",
            "--title",
            "Image segmentation",
            "--description",
            "camera pixels",
            "--model",
            str(model_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["tag"] == "computer-vision"
    assert payload["tag"] in LABELS
    assert set(payload["probabilities"]) == set(LABELS)
    assert payload["abstained"] is False
    assert payload["model"]["family"] == "rules"
    assert payload["model"]["uri"] == str(model_dir)
    assert tagops_home.is_dir()  # state went to the isolated home


def test_predict_with_threshold_abstains(model_dir: Path) -> None:
    result = runner.invoke(
        app, ["predict", "--title", "Image segmentation", "--model", str(model_dir), "--threshold", "1.0"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["tag"], payload["abstained"]) == ("other", True)


def test_predict_file(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame(
        {"title": ["Docker deployment", "Sentence translation"], "description": ["", "text"]}
    ).to_csv(source, index=False)
    output = tmp_path / "out.jsonl"
    result = runner.invoke(
        app, ["predict", "--input", str(source), "--output", str(output), "--model", str(model_dir)]
    )
    assert result.exit_code == 0, result.output
    assert f"{output}: 2 predictions" in result.stdout
    assert [json.loads(line)["tag"] for line in output.read_text().splitlines()] == [
        "mlops",
        "natural-language-processing",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --title"),
        (["--title", "x", "--input", "in.csv", "--output", "o.csv"], "give either --title"),
        (["--input", "in.csv"], "--input needs --output"),
        (["--title", " ", "--description", ""], "empty title and description"),
    ],
)
def test_predict_usage_errors(args: list[str], message: str, model_dir: Path, tagops_home: Path) -> None:
    result = runner.invoke(app, ["predict", *args, "--model", str(model_dir)])
    assert result.exit_code == 2
    assert "Usage" in result.output
    assert message in " ".join(result.output.replace("│", " ").split())
    assert not tagops_home.exists()  # refused before anything was prepared


def test_predict_with_unknown_model_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        monkeypatch, capsys, "predict", "--title", "x", "--model", str(tmp_path / "nowhere")
    )
    assert code == 1
    assert err.strip() == f"error: {tmp_path / 'nowhere'}: neither a models:/ URI nor a saved model folder"
    assert out == ""


def test_predict_file_with_bad_rows_names_them(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"title": "ok"}\n{"title": 3}\nnot json\n')
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "predict",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "o.csv"),
        "--model",
        str(model_dir),
    )
    assert code == 1
    assert err.strip().splitlines() == [f"error: {source}, row 3: invalid JSON (Expecting value)"]


def test_predict_file_refuses_its_output_before_loading_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"title": "ok"}\n')
    output = tmp_path / "o.parquet"
    code, out, err = run_main(
        monkeypatch,
        capsys,
        "predict",
        "--input",
        str(source),
        "--output",
        str(output),
        "--model",
        str(tmp_path / "nowhere"),
    )
    assert code == 1
    assert err.strip() == f"error: {output}: unsupported output type '.parquet': use .csv or .jsonl"
    assert out == "" and not output.exists()


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (["evaluate", "--model", "{nowhere}"], "file"),
        (["data", "explore", "--data", "{nowhere}"], "file"),
        (["data", "audit", "--data", "{nowhere}"], "file"),
        (["shadow", "report"], "file"),
        (["simulate"], "file"),
        (["monitor"], "folder"),
        (["gate", "--challenger", "{nowhere}", "--champion", "{nowhere}"], "folder"),
    ],
)
def test_an_unusable_output_is_refused_before_the_command_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    kind: str,
) -> None:
    # A folder where a file is meant and a file where a folder is meant: the one-line error names the
    # path, and it comes before the command looks at anything else (the model and data do not exist).
    target = tmp_path / "out"
    if kind == "file":
        target.mkdir()
        expected = "is a folder: give the output file's path"
    else:
        target.write_text("")
        expected = "is a file: give a folder for the outputs"
    args = [a.format(nowhere=tmp_path / "nowhere") for a in command]
    code, out, err = run_main(monkeypatch, capsys, *args, "--output", str(target))
    assert (code, out) == (1, "")
    assert err.strip() == f"error: {target}: {expected}"


def test_evaluate_local_model_without_mlflow(model_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "holdout.csv", make_projects(3, start_id=900, offset=40))
    output = tmp_path / "reports" / "eval.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--output",
            str(output),
            "--no-log-to-mlflow",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text())
    assert report["overall"]["num_samples"] == 12
    assert report["data"] == str(data)
    assert f"f1 {report['overall']['f1']:.4f}" in result.stdout
    assert sorted(p.name for p in output.parent.glob("*.png")) == [
        "eval_confusion_matrix.png",
        "eval_per_class.png",
        "eval_reliability.png",
    ]
    assert "mlflow" not in {p.name for p in output.parent.iterdir()}
    assert "robustness" not in report  # a user's file: only when asked
    assert "Robustness" not in result.stdout


def fake_challenge(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the challenge set by four rows in two styles; returns the list each load appends to."""
    calls: list[str] = []

    def load_challenge() -> pd.DataFrame:
        calls.append("load_challenge")
        frame = make_projects(1, start_id=800, offset=7)
        return frame.assign(style=["package", "package", "readme", "readme"])

    patch_load_challenge(monkeypatch, load_challenge)
    return calls


class RecordingRegistry:
    """Records what ``tagops evaluate`` logs to MLflow, without MLflow."""

    metrics: ClassVar[dict[str, Any]] = {}

    def __init__(self, settings: Any) -> None:
        pass

    @contextlib.contextmanager
    def start_run(self, run_name: str, **kwargs: Any) -> Iterator[None]:
        yield

    def log_metrics(self, metrics: dict[str, Any], *, prefix: str = "") -> None:
        self.metrics.update({f"{prefix}{k}": v for k, v in metrics.items()})

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        pass


def test_evaluate_with_robustness_reports_logs_and_prints_every_slice(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_challenge(monkeypatch)
    monkeypatch.setattr("tagops.registry.client.Registry", RecordingRegistry)
    monkeypatch.setattr(RecordingRegistry, "metrics", {})
    data = write_csv(tmp_path / "holdout.csv", make_projects(3, start_id=900, offset=40))
    output = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(output)]
    result = runner.invoke(app, [*args, "--robustness"])
    assert result.exit_code == 0, result.output
    robustness = json.loads(output.read_text())["robustness"]
    slices = robustness["slices"]
    assert set(slices) == {"holdout", *TRANSFORMS, "challenge", "challenge.package", "challenge.readme"}
    assert slices["holdout"]["num_samples"] == 12 and slices["challenge"]["num_samples"] == 4
    assert calls == ["load_challenge"]
    worst = robustness["worst_slice"]
    assert slices[worst]["f1"] == min(s["f1"] for s in slices.values())
    assert "Robustness" in result.stdout and f"{worst} (worst)" in result.stdout
    for name, scores in slices.items():
        assert f"{scores['f1']:.4f}" in result.stdout
        assert RecordingRegistry.metrics[f"robust.{name}.f1"] == scores["f1"]
    assert RecordingRegistry.metrics["eval.f1"] == slices["holdout"]["f1"]


@pytest.mark.parametrize(("flag", "expected"), [(None, True), ("--no-robustness", False)])
def test_robustness_is_on_by_default_for_the_pulled_holdout(
    flag: str | None, expected: bool, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_challenge(monkeypatch)
    holdout = write_csv(tmp_path / "holdout.csv", make_projects(2, start_id=900, offset=40))
    monkeypatch.setattr(
        "tagops.data.stages.pull_stage", lambda settings, cfg: SimpleNamespace(holdout_path=holdout)
    )
    output = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(model_dir), "--output", str(output), "--no-log-to-mlflow"]
    result = runner.invoke(app, args + ([flag] if flag else []))
    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text())
    assert report["data"] == str(holdout)
    assert ("robustness" in report) is expected and bool(calls) is expected
    assert ("Robustness" in result.stdout) is expected


def test_explore_writes_html(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", make_projects(4))
    output = tmp_path / "explore.html"
    result = runner.invoke(app, ["data", "explore", "--data", str(data), "--output", str(output)])
    assert result.exit_code == 0, result.output
    html = output.read_text()
    assert html.startswith("<!doctype html>")
    assert html.count("data:image/png;base64,") == 3
    for label in LABELS:
        assert label in html


def test_data_pull_from_mirror(mirror_dir: Path, tagops_home: Path) -> None:
    result = runner.invoke(app, ["data", "pull", "--mirror", str(mirror_dir)])
    assert result.exit_code == 0, result.output
    raw = tagops_home / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["dataset.csv", "holdout.csv", "projects.csv", "tags.csv"]
    assert (raw / "dataset.csv").stat().st_mode & 0o777 == 0o444


@pytest.mark.integration  # runs the console module in a subprocess
def test_console_module_reports_data_errors_without_traceback(tmp_path: Path) -> None:
    frame = make_projects(2)
    frame.loc[0, "title"] = " "
    path = write_csv(tmp_path / "bad.csv", frame)
    env = {**os.environ, "TAGOPS_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "tagops.cli", "data", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert error_lines == [f"error: {path}, row 1, column 'title': title is empty (value ' ')"]
