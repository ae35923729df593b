"""A config file a command cannot use is a usage error naming the file and each bad field as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from tagops.cli.context import read_config
from tagops.config import RetrainConfig, TrainConfig, TuneConfig

from .test_cli import run_main

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("restore_process_state", "tagops_home")]


def error_lines(err: str) -> list[str]:
    """The usage error's message, one entry per line, without click's "Error: Invalid value: " prefix."""
    text = err[err.index("Error: ") :].removeprefix("Error: ")
    text = text.split(": ", 1)[1] if text.startswith("Invalid value") else text
    return text.strip().splitlines()


BAD_TRAIN = "model:\n  family: linear\n  C: -1\n  c: 3\ndata:\n  val_size: 2\n"


@pytest.mark.parametrize("command", [["train"], ["pipeline", "train"], ["tune"]])
def test_every_bad_field_is_named_as_written_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(BAD_TRAIN if command == ["train"] else "models: []\nseeed: 3\n")
    code, _, err = run_main(monkeypatch, capsys, *command, "--config", str(path))
    assert code == 2
    assert "Traceback" not in err and "errors.pydantic.dev" not in err
    if command == ["train"]:
        # The linear family's tag that pydantic puts in the location (model.linear.C) is not in the file.
        assert sorted(error_lines(err)) == sorted(
            [
                f"{path}, field 'data.val_size': Input should be less than 1",
                f"{path}, field 'model.C': Input should be greater than 0",
                f"{path}, field 'model.c': unknown field (a typo?)",
            ]
        )
    else:
        assert f"{path}, field 'seeed': unknown field (a typo?)" in error_lines(err)


def test_a_config_that_is_not_utf8_text_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes("seed: 3  # réglage\n".encode("latin-1"))
    code, _, err = run_main(monkeypatch, capsys, "train", "--config", str(path))
    assert code == 2
    assert error_lines(err) == [f"{path}: cannot read config: not UTF-8 text (byte 12)"]


def test_a_field_set_by_an_option_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "tune.yaml"
    path.write_text("trials: 4\n")
    with pytest.raises(typer.BadParameter) as info:
        read_config(TuneConfig, path, trials=0)
    assert (
        info.value.message == "the command line, field 'trials': Input should be greater than or equal to 1"
    )
    with pytest.raises(typer.BadParameter) as info:
        read_config(TrainConfig, None, seed="x")
    assert info.value.message.startswith("the command line, field 'seed': ")


def test_a_config_read_from_a_section_names_the_section(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("retrain:\n  train:\n    model:\n      family: rules\n      min_term_count: 0\n")
    with pytest.raises(typer.BadParameter) as info:
        read_config(RetrainConfig, path)
    field = "field 'train.model.min_term_count'"
    assert (
        info.value.message
        == f"{path}, section 'retrain', {field}: Input should be greater than or equal to 1"
    )


@pytest.mark.parametrize("command", [["train"], ["pipeline", "train"], ["monitor"], ["rollout", "status"]])
def test_a_missing_config_is_the_same_usage_error_for_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "absent.yaml"
    code, _, err = run_main(monkeypatch, capsys, *command, "--config", str(path))
    assert code == 2
    assert error_lines(err)[0].startswith(f"{path}: cannot read config: ")


def test_a_folder_given_as_config_is_named_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "train", "--config", str(tmp_path))
    assert code == 2
    assert error_lines(err) == [f"{tmp_path}: is a folder, not a config file"]


def test_a_home_that_cannot_hold_state_is_named_by_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "home-is-a-file"
    plain.write_text("")
    for home, reason in ((plain, "(Not a directory)"), (Path("/proc/tagops"), "")):
        monkeypatch.setenv("TAGOPS_HOME", str(home))
        code, out, err = run_main(monkeypatch, capsys, "models", "list")
        assert (code, out) == (1, ""), err
        (line,) = err.strip().splitlines()  # one line, no traceback
        assert line.startswith(f"error: TAGOPS_HOME {home}: cannot create {home}/data/raw ("), line
        assert line.endswith(reason)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TAGOPS_REGISTERED_MODEL", "", "TAGOPS_REGISTERED_MODEL: String should have at least 1 character"),
        ("TAGOPS_HOME", "~no-such-user-here/x", "TAGOPS_HOME: cannot expand '~' in '~no-such-user-here/x'"),
        ("TAGOPS_SERVE", "x", "TAGOPS_SERVE: not a JSON object; set the section's variables one by one"),
        ("TAGOPS_MLFLOW_TRACKING_URI", "notaurl://x", "MLflow at notaurl://x (TAGOPS_MLFLOW_TRACKING_URI): "),
        (
            "MLFLOW_TRACKING_URI",
            "http://127.0.0.1:abc",
            "MLflow at http://127.0.0.1:abc (MLFLOW_TRACKING_URI): Port",
        ),
    ],
)
def test_an_environment_variable_the_product_cannot_use_is_one_error_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.delenv("TAGOPS_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(variable, value)
    code, out, err = run_main(monkeypatch, capsys, "models", "list")
    assert (code, out) == (1, ""), err
    (line,) = err.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"error: {message}"), line


def test_a_tracking_server_that_is_not_there_is_refused_at_once_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import time

    with socket.socket() as listener:  # a port nothing listens on: bound, closed again
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    monkeypatch.delenv("TAGOPS_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:s3cret@127.0.0.1:{port}")
    started = time.monotonic()
    code, _, err = run_main(monkeypatch, capsys, "models", "list")
    assert time.monotonic() - started < 10  # MLflow's own retries would take minutes
    assert code == 1
    (line,) = err.strip().splitlines()
    where = f"MLflow at http://user:***@127.0.0.1:{port} (MLFLOW_TRACKING_URI)"
    assert line == f"error: cannot reach {where}: Connection refused"


def test_a_prediction_log_database_that_cannot_be_used_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    expected = {
        f"postgresql://tagops@127.0.0.1:{port}/log": (
            f'error: the database cannot be used: connection failed: connection to server at "127.0.0.1", '
            f"port {port} failed: Connection refused"
        ),
        "sqlite:////proc/tagops/log.db": (
            "error: sqlite:////proc/tagops/log.db: "
            "cannot create the database file (No such file or directory)"
        ),
    }
    for url, message in expected.items():
        monkeypatch.setenv("TAGOPS_SERVE_DATABASE_URL", url)
        for command in (["keys", "list"], ["feedback", "review"]):
            code, out, err = run_main(monkeypatch, capsys, *command)
            assert (code, out) == (1, ""), err
            assert err.strip().splitlines() == [message]


TRANSFORMER_FROM = {
    "train": "model:\n  family: transformer\n  encoder: {folder}\n",
    "pipeline": "models:\n  - family: linear\n  - family: ensemble\n    members:\n"
    "      - family: transformer\n        encoder: {folder}\n      - family: linear\n",
    "tune": "transformer:\n  encoder: {folder}\n",
}


@pytest.mark.parametrize(
    "command", [["train", "--no-register"], ["pipeline", "train", "--no-pipeline"], ["tune", "--no-register"]]
)
def test_an_encoder_that_cannot_load_is_named_before_data_or_registry(
    tmp_path: Path,
    tagops_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    folder = tmp_path / "my-encoder"  # never made
    path = tmp_path / "cfg.yaml"
    path.write_text(TRANSFORMER_FROM[command[0]].format(folder=folder))
    monkeypatch.setenv("TAGOPS_DATA_MIRROR", str(tmp_path / "no-mirror"))  # reading data would fail otherwise
    code, out, err = run_main(monkeypatch, capsys, *command, "--config", str(path))
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    assert f"error: encoder '{folder}': no such folder (give a model folder or a Hugging Face id)" in err
    assert not (tagops_home / "data" / "raw" / "dataset.csv").exists()
    assert not list(tagops_home.rglob("*.db"))  # no MLflow store or warehouse was made
