"""`tagops submit`: the job's entrypoint, runtime environment and address, following a job, exit codes.

A fake job client stands in for Ray's ``JobSubmissionClient``; nothing here starts Ray.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

import tagops
from tagops.cli import app
from tagops.workloads import submit as jobs
from tagops.workloads.submit import (
    JobOutcome,
    JobRequest,
    SubmitError,
    build_entrypoint,
    exit_code,
    follow,
    job_env_vars,
    resolve_address,
    run_job,
    runtime_env,
    short_message,
    stage_args,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("restore_process_state")]

FAILED_MESSAGE = (
    "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
    "Traceback (most recent call last):\nValueError: missing.yaml: cannot read config\n"
)


class FakeJobClient:
    """The part of ``JobSubmissionClient`` tagops uses; the job goes through ``statuses`` one per poll."""

    def __init__(
        self,
        statuses: tuple[str, ...] = ("SUCCEEDED",),
        *,
        chunks: tuple[str, ...] = ("Running entrypoint\n", "registered tagops version 1\n"),
        tail_fails_after: int | None = None,
        message: str = "Job finished successfully.",
    ) -> None:
        self.statuses = list(statuses)
        self.chunks = chunks
        self.tail_fails_after = tail_fails_after
        self.message = message
        self.submitted: dict[str, Any] = {}
        self.shipped: dict[str, str] = {}
        self.stopped: list[str] = []

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted = kwargs
        # Ray uploads the working folder during submit_job; what it would upload is read now.
        folder = Path(kwargs["runtime_env"]["working_dir"])
        self.shipped = {
            p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()
        }
        return str(kwargs["submission_id"])

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        for index, chunk in enumerate(self.chunks):
            if self.tail_fails_after is not None and index >= self.tail_fails_after:
                raise RuntimeError("websocket closed unexpectedly")
            yield chunk

    def get_job_logs(self, job_id: str) -> str:
        return "".join(self.chunks)

    def get_job_status(self, job_id: str) -> str:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def get_job_info(self, job_id: str) -> Any:
        if job_id == "missing":
            raise RuntimeError("Request failed with status code 404: Job missing does not exist.")
        return SimpleNamespace(status=self.statuses[0], message=self.message)

    def stop_job(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        return True


# ----------------------------------------------------------------------------------------- entrypoint
def test_the_entrypoint_is_the_workload_command_with_every_argument_quoted() -> None:
    args = ["--title", "Docker; rm -rf / $(whoami)", "--description", 'it\'s "quoted"', "--threshold", "0.5"]
    entrypoint = build_entrypoint("predict", args)
    assert entrypoint.startswith("python -m tagops.cli predict ")
    assert shlex.split(entrypoint) == ["python", "-m", "tagops.cli", "predict", *args]
    assert build_entrypoint("train", []) == "python -m tagops.cli train"


def test_only_the_four_workloads_are_submitted() -> None:
    with pytest.raises(SubmitError, match=r"cannot submit 'serve': use one of train, tune, retrain, predict"):
        build_entrypoint("serve", [])


# ------------------------------------------------------------------------------------ runtime env
ENVIRON = {
    "TAGOPS_HOME": "state/home",
    "TAGOPS_DATA_MIRROR": "/data/mirror",
    "TAGOPS_LOG_LEVEL": "DEBUG",
    "TAGOPS_RETRAIN_SERVICE_URL": "http://api:8000",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    # secrets
    "TAGOPS_SERVE_DATABASE_URL": "postgresql://tagops:pw@db/tagops",
    "TAGOPS_RETRAIN_ADMIN_KEY": "tagops_admin_key",
    "TAGOPS_WEBHOOK_TOKEN": "t0ken",
    "TAGOPS_RETRAIN_SERVICE_PASSWORD": "pw",
    # not tagops' business, or the cluster's own
    "AWS_SECRET_ACCESS_KEY": "aws",
    "PATH": "/usr/bin",
    "HOME": "/home/me",
    "RAY_ADDRESS": "127.0.0.1:6380",
    "TAGOPS_RAY_ADDRESS": "10.0.0.1:6379",
    "RAY_JOB_ADDRESS": "http://head:8265",
}


def test_settings_pass_to_the_job_and_secrets_only_when_named(tmp_path: Path) -> None:
    passed = job_env_vars(ENVIRON, cwd=tmp_path)
    assert passed == {
        "TAGOPS_HOME": str(tmp_path / "state" / "home"),  # relative here: absolute for the job's folder
        "TAGOPS_DATA_MIRROR": "/data/mirror",
        "TAGOPS_LOG_LEVEL": "DEBUG",
        "TAGOPS_RETRAIN_SERVICE_URL": "http://api:8000",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HF_HUB_OFFLINE": "1",
    }
    named = job_env_vars(ENVIRON, ["TAGOPS_SERVE_DATABASE_URL", "AWS_SECRET_ACCESS_KEY"], cwd=tmp_path)
    assert named["TAGOPS_SERVE_DATABASE_URL"] == ENVIRON["TAGOPS_SERVE_DATABASE_URL"]
    assert named["AWS_SECRET_ACCESS_KEY"] == "aws"
    assert "TAGOPS_RETRAIN_ADMIN_KEY" not in named


def test_a_tracking_uri_with_a_password_is_a_secret(tmp_path: Path) -> None:
    environ = {"MLFLOW_TRACKING_URI": "https://me:hunter2@mlflow.example.com"}
    assert job_env_vars(environ, cwd=tmp_path) == {}
    assert job_env_vars(environ, ["MLFLOW_TRACKING_URI"], cwd=tmp_path) == environ


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("TAGOPS_NOT_SET", "--env TAGOPS_NOT_SET: TAGOPS_NOT_SET is not set in this environment"),
        ("RAY_ADDRESS", "--env RAY_ADDRESS: the job joins the cluster it runs on"),
        ("TAGOPS_RAY_ADDRESS", "--env TAGOPS_RAY_ADDRESS: the job joins the cluster it runs on"),
    ],
)
def test_env_names_what_cannot_be_passed(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(SubmitError, match=message):
        job_env_vars(ENVIRON, [name], cwd=tmp_path)


def test_the_runtime_env_ships_this_tagops_package_and_the_staging_folder(tmp_path: Path) -> None:
    env = runtime_env({"TAGOPS_HOME": "/srv/tagops"}, tmp_path)
    (module,) = env["py_modules"]
    assert Path(module) == Path(tagops.__file__).resolve().parent
    assert Path(module).name == "tagops" and (Path(module) / "cli" / "__main__.py").is_file()
    assert env["working_dir"] == str(tmp_path)
    assert env["env_vars"] == {"TAGOPS_HOME": "/srv/tagops"}
    assert "__pycache__/" in env["excludes"]


# ------------------------------------------------------------------------------------ local files
@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    cwd = tmp_path / "project"
    (cwd / "configs").mkdir(parents=True)
    (cwd / "configs" / "train.yaml").write_text("model: {family: linear}\n")
    (cwd / "summary.json").write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "items.csv").write_text("title,description\n")
    (tmp_path / "elsewhere" / "model").mkdir()
    (tmp_path / "elsewhere" / "model" / "weights.json").write_text("{}")
    return cwd


def test_local_files_are_shipped_and_the_arguments_point_at_the_copies(workdir: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    elsewhere = tmp_path / "elsewhere"
    args = [
        "--config", "configs/train.yaml",
        "--summary=summary.json",
        "--input", str(elsewhere / "items.csv"),
        "--model", "../elsewhere/model",
        "--data", "configs/train.yaml",  # the same file twice: one copy
        "--seed", "-1",
        "--resume", "not-a-file",
        "--model", "models:/tagops@champion",
    ]  # fmt: skip
    staged = stage_args(args, cwd=workdir, staging=staging)
    assert staged == [
        "--config", "configs/train.yaml",
        "--summary=summary.json",
        "--input", "_files/2/items.csv",
        "--model", "_files/3/model",
        "--data", "configs/train.yaml",
        "--seed", "-1",
        "--resume", "not-a-file",
        "--model", "models:/tagops@champion",
    ]  # fmt: skip
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    assert files == [
        "_files/2/items.csv",
        "_files/3/model/weights.json",
        "configs/train.yaml",
        "summary.json",
    ]
    assert (staging / "configs" / "train.yaml").read_text() == "model: {family: linear}\n"


def test_titles_are_never_taken_for_files(workdir: Path, tmp_path: Path) -> None:
    staged = stage_args(
        ["--title", "configs", "--description", "summary.json"], cwd=workdir, staging=tmp_path
    )
    assert staged == ["--title", "configs", "--description", "summary.json"]
    assert not (tmp_path / "configs").exists()


def test_a_relative_output_path_is_refused_and_an_absolute_one_kept(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match=r"--output out.jsonl: .*give an absolute path"):
        stage_args(["--input", "summary.json", "--output", "out.jsonl"], cwd=workdir, staging=tmp_path)
    assert stage_args(["--output=/shared/out.jsonl"], cwd=workdir, staging=tmp_path) == [
        "--output=/shared/out.jsonl"
    ]


# ----------------------------------------------------------------------------------------- address
@pytest.mark.parametrize(
    ("option", "environ", "expected"),
    [
        ("http://head:8265/", {"RAY_JOB_ADDRESS": "http://other:8265"}, "http://head:8265"),
        (None, {"RAY_JOB_ADDRESS": "https://jobs.example.com", "RAY_ADDRESS": "http://x:1"}, "https://jobs.example.com"),
        (None, {"RAY_ADDRESS": "http://127.0.0.2:8265"}, "http://127.0.0.2:8265"),
    ],
)  # fmt: skip
def test_the_address_comes_from_the_option_then_the_environment(
    option: str | None, environ: dict[str, str], expected: str
) -> None:
    assert resolve_address(option, environ) == expected


@pytest.mark.parametrize(
    ("option", "environ", "message"),
    [
        (None, {}, r"no cluster to submit to: give --address http://HEAD:8265 .* or set RAY_JOB_ADDRESS"),
        (None, {"RAY_ADDRESS": "127.0.0.1:6379"}, r"RAY_ADDRESS=127.0.0.1:6379 is the .*--address"),
        ("127.0.0.1:8265", {}, r"--address: '127.0.0.1:8265' is not the Ray dashboard's URL"),
        (None, {"RAY_JOB_ADDRESS": "ray://head:10001"}, r"RAY_JOB_ADDRESS: 'ray://head:10001' is not"),
        ("http://", {}, r"--address: 'http://' is not"),
    ],
)  # fmt: skip
def test_a_missing_or_wrong_address_is_a_clear_error(
    option: str | None, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SubmitError, match=message):
        resolve_address(option, environ)


# --------------------------------------------------------------------------------- submit & follow
def test_a_job_is_submitted_with_the_shipped_config_and_the_settings(workdir: Path) -> None:
    client = FakeJobClient()
    request = JobRequest("train", ("--config", "configs/train.yaml", "--no-register"), num_cpus=1)
    environ = {"TAGOPS_HOME": "/srv/tagops", "TAGOPS_SERVE_DATABASE_URL": "postgresql://u:p@db/x"}
    job_id = jobs.submit(client, request, environ=environ, cwd=workdir)
    assert job_id.startswith("tagops-train-")
    sent = client.submitted
    assert sent["submission_id"] == job_id
    assert sent["entrypoint"] == "python -m tagops.cli train --config configs/train.yaml --no-register"
    assert sent["entrypoint_num_cpus"] == 1
    assert sent["runtime_env"]["env_vars"] == {"TAGOPS_HOME": "/srv/tagops"}
    assert sent["metadata"]["tagops.workload"] == "train"
    assert client.shipped == {"configs/train.yaml": "model: {family: linear}\n"}
    assert not Path(sent["runtime_env"]["working_dir"]).exists()  # uploaded, then removed here
    again = jobs.submit(client, JobRequest("tune", submission_id="my-search"), environ={}, cwd=workdir)
    assert again == "my-search"


def test_following_a_job_streams_its_logs_and_ends_with_its_outcome() -> None:
    client = FakeJobClient(("RUNNING", "SUCCEEDED"))
    written: list[str] = []
    result = follow(client, "job-1", written.append, poll_s=0)
    assert written == ["Running entrypoint\n", "registered tagops version 1\n"]
    assert result == JobOutcome("job-1", "SUCCEEDED", "Job finished successfully.")
    assert result.exit_code == 0


def test_when_the_log_stream_breaks_the_rest_is_polled_without_repeats() -> None:
    client = FakeJobClient(("RUNNING", "FAILED"), tail_fails_after=1, message=FAILED_MESSAGE)
    written: list[str] = []
    result = follow(client, "job-2", written.append, poll_s=0)
    assert "".join(written) == "Running entrypoint\nregistered tagops version 1\n"
    assert result.status == "FAILED" and result.exit_code == 1
    assert result.message == "Job entrypoint command failed with exit code 1"  # the logs are not repeated


def test_without_wait_the_job_is_left_running() -> None:
    client = FakeJobClient(("PENDING",), message="Job has not started yet.")
    result = run_job(client, JobRequest("predict", ("--title", "x")), wait=False, write=print, environ={})
    assert result.status == "PENDING" and result.exit_code == 0
    assert result.to_json() == {
        "job_id": result.job_id,
        "status": "PENDING",
        "message": "Job has not started yet.",
    }


@pytest.mark.parametrize(
    ("status", "code"),
    [("SUCCEEDED", 0), ("FAILED", 1), ("STOPPED", 1), ("PENDING", 0), ("RUNNING", 0)],
)
def test_exit_codes_follow_the_job_status(status: str, code: int) -> None:
    assert exit_code(status) == code
    assert JobOutcome("j", status).exit_code == code


def test_ray_messages_keep_their_first_line() -> None:
    assert short_message(FAILED_MESSAGE) == "Job entrypoint command failed with exit code 1"
    assert short_message("Job was intentionally stopped.") == "Job was intentionally stopped."
    assert short_message(None) is None


# --------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``job_client`` answers with a fake client; yields what it was asked for."""
    seen: dict[str, Any] = {"client": FakeJobClient()}

    def connect(address: str) -> FakeJobClient:
        seen["address"] = address
        client: FakeJobClient = seen["client"]
        return client

    monkeypatch.setattr(jobs, "job_client", connect)
    for name in ("RAY_ADDRESS", "RAY_JOB_ADDRESS", "TAGOPS_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    yield seen


def test_submit_passes_unknown_options_to_the_workload_and_prints_the_outcome(
    fake_cluster: dict[str, Any], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    result = CliRunner().invoke(
        app,
        ["submit", "train", "--address", "http://head:8265", "--config", "configs/train.yaml",
         "--job-id", "nightly", "--no-register", "--num-cpus", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fake_cluster["address"] == "http://head:8265"
    sent = fake_cluster["client"].submitted
    assert sent["entrypoint"] == "python -m tagops.cli train --config configs/train.yaml --no-register"
    assert sent["submission_id"] == "nightly" and sent["entrypoint_num_cpus"] == 1
    assert json.loads(result.stdout) == {
        "job_id": "nightly",
        "status": "SUCCEEDED",
        "message": "Job finished successfully.",
    }
    assert "registered tagops version 1" in result.stderr  # the job's logs go to stderr


def test_a_failed_job_exits_1_with_its_error(
    fake_cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cluster["client"] = FakeJobClient(("FAILED",), message=FAILED_MESSAGE)
    monkeypatch.setenv("RAY_JOB_ADDRESS", "http://head:8265")
    result = CliRunner().invoke(app, ["submit", "retrain", "--job-id", "r1", "--config", "missing.yaml"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "FAILED"
    assert "error: job r1 FAILED: Job entrypoint command failed with exit code 1" in result.stderr


def test_status_logs_and_stop(fake_cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    client = fake_cluster["client"]
    status = CliRunner().invoke(app, ["submit", "status", "job-9"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["status"] == "SUCCEEDED"
    logs = CliRunner().invoke(app, ["submit", "logs", "job-9"])
    assert logs.stdout == "Running entrypoint\nregistered tagops version 1\n"
    stopped = CliRunner().invoke(app, ["submit", "stop", "job-9"])
    assert stopped.exit_code == 0 and client.stopped == ["job-9"]
    missing = CliRunner().invoke(app, ["submit", "status", "missing"])
    assert isinstance(missing.exception, SubmitError)
    assert "no job 'missing' on the cluster" in str(missing.exception)


def test_submit_without_an_address_names_the_option(fake_cluster: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["submit", "predict", "--title", "x"])
    assert isinstance(result.exception, SubmitError)
    assert "--address" in str(result.exception)
    assert "address" not in fake_cluster  # nothing was contacted


HELP = """
import json, sys
from tagops.cli import main
sys.argv = ["tagops", "submit", "train", "--help"]
try:
    main()
except SystemExit:
    pass
print(json.dumps([m for m in ("ray", "mlflow", "torch") if m in sys.modules]))
"""


def test_help_lists_the_workloads_without_importing_ray(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["submit", "--help"])
    assert result.exit_code == 0
    for command in ("train", "tune", "retrain", "predict", "status", "logs", "stop"):
        assert command in result.stdout
    proc = subprocess.run(
        [sys.executable, "-c", HELP], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--address" in proc.stdout and "--env NAME" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
