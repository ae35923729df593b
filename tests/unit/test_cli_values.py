"""A value a command cannot use is a usage error (exit 2) naming the option or field and what it takes.

What each refusal prevents: a threshold above 1 would abstain on every answer and NaN on none, in
silence; a negative or 33-bit seed, an infinite age or an unknown engine would fail later with a
library's traceback; click's float ranges let NaN through.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from tagops.cli.context import read_config
from tagops.cli.params import number
from tagops.config import ServeConfig, TrainConfig

from .test_cli import run_main
from .test_cli_config import error_lines

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("restore_process_state", "tagops_home")]


OPTION = "Invalid value for '{}': {}"
FIELD = "Invalid value: the command line, field '{}': {}"
PREDICT = ["predict", "--title", "x"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*PREDICT, "--threshold", "1.5"], OPTION.format("--threshold", "1.5 is not from 0 to 1")),
        ([*PREDICT, "--threshold", "nan"], OPTION.format("--threshold", "'nan' is not a finite number")),
        ([*PREDICT, "--engine", "gpu"], OPTION.format("--engine", "'gpu': use auto, local or ray")),
        (
            ["evaluate", "--output", "r.json", "--threshold", "-0.1"],
            OPTION.format("--threshold", "-0.1 is not from 0 to 1"),
        ),
        (["data", "audit", "--seed", "-1"], OPTION.format("--seed", "-1 is not from 0 to 4294967295")),
        (
            ["train", "--seed", "4294967296"],
            FIELD.format("seed", "Input should be less than or equal to 4294967295"),
        ),
        (["tune", "--seed", "-3"], FIELD.format("seed", "Input should be greater than or equal to 0")),
        (["train", "--gpus-per-worker", "-1"], OPTION.format("--gpus-per-worker", "-1 is not at least 0")),
        (
            ["log-prune", "--older-than-days", "inf"],
            OPTION.format("--older-than-days", "'inf' is not a finite number"),
        ),
        (["log-prune", "--older-than-days", "0"], OPTION.format("--older-than-days", "0 is not above 0")),
        (["rollout", "start", "--weight", "nan"], OPTION.format("--weight", "'nan' is not a finite number")),
        (["rollout", "start", "--weight", "150"], OPTION.format("--weight", "150 is not from 0.01 to 100")),
        (["team", "up", "--timeout", "inf"], OPTION.format("--timeout", "'inf' is not a finite number")),
        (["submit", "predict", "--num-cpus", "many"], OPTION.format("--num-cpus", "'many' is not a number")),
        (
            ["loop", "run", "--every", "0s"],
            FIELD.format(
                "every", "a period is a positive number and a unit (s, m, h, d), e.g. 15m; got '0s'"
            ),
        ),
    ],
)
def test_a_number_a_command_cannot_use_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"Error: {message}"


def test_the_number_parser_takes_what_its_range_holds() -> None:
    assert number(0.0, 1.0)("0") == 0.0 and number(0.0, 1.0)("1") == 1.0
    assert number(0.0, above=True)("1e-9") == 1e-9
    assert number()("-1e300") == -1e300
    with pytest.raises(typer.BadParameter, match="'-inf' is not a finite number"):
        number()("-inf")
    with pytest.raises(typer.BadParameter, match=r"^0 is not above 0 and at most 1$"):
        number(0.0, 1.0, above=True)("0")
    with pytest.raises(typer.BadParameter, match=r"^2 is not at most 1$"):
        number(high=1.0)("2")


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        (TrainConfig, "data: {val_size: .nan}", "field 'data.val_size': Input should be a finite number"),
        (TrainConfig, "model: {family: linear, C: .inf}", "field 'model.C': Input should be a finite number"),
        (TrainConfig, "seed: -1", "field 'seed': Input should be greater than or equal to 0"),
        (
            ServeConfig,
            "log_retention_days: .inf",
            "field 'log_retention_days': Input should be a finite number",
        ),
    ],
)
def test_a_config_number_that_is_not_finite_or_not_a_seed_is_named(
    tmp_path: Path, kind: type[TrainConfig] | type[ServeConfig], text: str, message: str
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(typer.BadParameter) as info:
        read_config(kind, path)
    assert info.value.message == f"{path}, {message}"


def test_a_validator_is_quoted_in_its_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("schedule:\n  every: 2 weeks\n")
    code, _, err = run_main(monkeypatch, capsys, "loop", "run", "--config", str(path))
    assert code == 2
    assert error_lines(err) == [
        f"{path}, field 'schedule.every': "
        "a period is a positive number and a unit (s, m, h, d), e.g. 15m; got '2 weeks'"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["monitor", "--since", "yesterday", "--no-pipeline"],
            OPTION.format("--since", "'yesterday' is not an ISO 8601 time (e.g. 2026-11-26T10:00:00Z)"),
        ),
        (
            ["shadow", "report", "--until", "2026-99-01"],
            OPTION.format("--until", "'2026-99-01' is not an ISO 8601 time (e.g. 2026-11-26T10:00:00Z)"),
        ),
        (
            ["keys", "create", "--name", "ci", "--role", "root"],
            "Invalid value: role must be one of ['client', 'labeller', 'admin'], got 'root'",
        ),
        (["keys", "create", "--name", " "], "Invalid value: a key needs a name of 1 to 200 characters"),
        (["feedback", "accept"], "Invalid value: name feedback ids or --key"),
        (["feedback", "accept", "f1", "--key", "k1"], "Invalid value: name feedback ids or --key, not both"),
    ],
)
def test_a_value_an_option_cannot_take_is_a_usage_error_in_every_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert (code, out) == (2, ""), err
    assert err.strip().splitlines()[-1] == f"Error: {message}"
