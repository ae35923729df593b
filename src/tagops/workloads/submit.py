"""Run a workload on a Ray cluster as a Ray Job: the same command, the submitter's code, its settings.

``tagops submit train|tune|retrain|predict [--address http://HEAD:8265] [--no-wait] [ARGS...]`` sends
``python -m tagops.cli <workload> ARGS`` to the cluster's job API (the Ray dashboard) with a runtime
environment that ships this ``tagops`` package, the local files the arguments name and the settings the
job needs; by default it then follows the job's logs and exits with the job's outcome.
``tagops submit status|logs|stop JOB_ID`` ask about, print or stop a job.

Inside the job Ray sets ``RAY_ADDRESS`` to the cluster, so the workload joins it
(:func:`tagops.runtime.ray_session`) instead of starting an embedded one. Ray's job SDK is imported
inside functions only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tagops
from tagops.errors import TagopsError

logger = logging.getLogger(__name__)

#: The workloads ``tagops submit`` runs (each is the ``tagops`` command of the same name).
WORKLOADS = ("train", "tune", "retrain", "predict")

#: Where the job API is when ``--address`` is not given (the dashboard's URL, e.g. http://head:8265).
ADDRESS_ENV = "RAY_JOB_ADDRESS"

#: Settings outside ``TAGOPS_*`` that a workload reads and that the job takes from the submitter: the
#: registry to use, and the switches that keep libraries offline and quiet as they are here.
PASSED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

#: ``TAGOPS_*`` variables that hold a secret (a database password, an admin key): runtime environments
#: are stored in the cluster and shown by its dashboard and ``ray job`` commands, so these go only when
#: named with ``--env``.
SECRET_ENV = frozenset(
    {
        "TAGOPS_SERVE_DATABASE_URL",
        "TAGOPS_RETRAIN_ADMIN_KEY",
        "TAGOPS_STEP_SECRETS",
        "TAGOPS_LOG_MIGRATE_TO",
        "TAGOPS_TEAM_POSTGRES",
    }
)
#: Any other variable whose name says it holds a secret is treated the same way.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)

#: Never passed: Ray sets ``RAY_ADDRESS`` in the job to the cluster it runs on, and a ``TAGOPS_RAY_ADDRESS``
#: from here (which wins over it) would send the workload to another cluster.
CLUSTER_ENV = frozenset({"RAY_ADDRESS", "TAGOPS_RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", ADDRESS_ENV})

#: Settings that are paths: a relative one is made absolute here, since the job runs in another folder.
PATH_ENV = frozenset({"TAGOPS_HOME", "TAGOPS_DATA_MIRROR"})

#: Options whose value is a file the workload writes. The job runs in a temporary working folder on the
#: cluster, so a relative path there would be lost with it.
OUTPUT_OPTIONS = frozenset({"--output"})

#: Options whose value is text or a name, never a file to ship (a title that happens to name a folder here).
TEXT_OPTIONS = frozenset({"--title", "--description", "--resume"})

#: Where a local file named in the arguments goes in the job's working folder when its path is absolute or
#: leads out of the current folder (a relative path inside it keeps its place).
OUTSIDE_FILES = "_files"

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class SubmitError(TagopsError):
    """A job could not be submitted, followed or found."""


@dataclass(frozen=True)
class JobRequest:
    """One workload to run as a Ray Job.

    Attributes:
        workload: One of :data:`WORKLOADS`.
        args: The workload's arguments, as they would follow ``tagops <workload>`` here.
        env: Further variables to pass from this environment (``--env NAME``), secrets included.
        submission_id: The job's id (default: ``tagops-<workload>-<random>``).
        num_cpus: CPUs reserved for the entrypoint (the workload's driver) on the cluster.

    """

    workload: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    submission_id: str | None = None
    num_cpus: float | None = None


@dataclass(frozen=True)
class JobOutcome:
    """Where a job ended (or stands, when it was not followed)."""

    job_id: str
    status: str
    message: str | None = None

    @property
    def exit_code(self) -> int:
        """The exit code of ``tagops submit``: see :func:`exit_code`."""
        return exit_code(self.status)

    def to_json(self) -> dict[str, Any]:
        """The outcome as ``tagops submit`` prints it."""
        return {"job_id": self.job_id, "status": self.status, "message": self.message}


# ------------------------------------------------------------------------------------------- address
def resolve_address(option: str | None, environ: Mapping[str, str]) -> str:
    """The job API's URL: ``--address``, else ``RAY_JOB_ADDRESS``, else an ``http(s)://`` ``RAY_ADDRESS``.

    Raises:
        SubmitError: None is given, or the one given is not the dashboard's http(s) URL.

    """
    if option:
        address, source = option, "--address"
    elif environ.get(ADDRESS_ENV):
        address, source = environ[ADDRESS_ENV], ADDRESS_ENV
    elif environ.get("RAY_ADDRESS"):
        address, source = environ["RAY_ADDRESS"], "RAY_ADDRESS"
        if not _is_http(address):
            raise SubmitError(
                f"RAY_ADDRESS={address} is the cluster's own address; jobs are submitted to its dashboard: "
                f"give --address http://HEAD:8265 (or set {ADDRESS_ENV})"
            )
    else:
        raise SubmitError(
            f"no cluster to submit to: give --address http://HEAD:8265 (the Ray dashboard's URL) "
            f"or set {ADDRESS_ENV}"
        )
    if not _is_http(address) or not urlsplit(address).hostname:
        raise SubmitError(
            f"{source}: {address!r} is not the Ray dashboard's URL (expected http://HOST:PORT, "
            "e.g. http://127.0.0.1:8265)"
        )
    return address.rstrip("/")


def _is_http(address: str) -> bool:
    return urlsplit(address).scheme in ("http", "https")


def job_client(address: str) -> Any:
    """A ``ray.job_submission.JobSubmissionClient`` for the job API at ``address`` (checked reachable).

    Raises:
        SubmitError: Nothing answers there, or it is not a Ray job API.

    """
    from ray.job_submission import JobSubmissionClient

    # Ray lets RAY_API_SERVER_ADDRESS, then RAY_ADDRESS, win over the address it is given; a RAY_ADDRESS
    # naming the cluster's GCS (as workloads use it) would send the client elsewhere than --address.
    with _environment("RAY_API_SERVER_ADDRESS", address):
        try:
            return JobSubmissionClient(address)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise SubmitError(f"no Ray job API at {address}: {error}") from error


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


# ---------------------------------------------------------------------------------------- the job
def build_entrypoint(workload: str, args: Sequence[str]) -> str:
    """The shell command the job runs: ``python -m tagops.cli <workload> ARGS``, every argument quoted.

    ``python -m tagops.cli`` rather than the ``tagops`` script: it needs only a Python with tagops'
    dependencies on the cluster's ``PATH``, and runs the shipped package (``py_modules`` come first on the
    job's ``sys.path``) whether or not the cluster has tagops installed.

    Raises:
        SubmitError: ``workload`` is not one of :data:`WORKLOADS`.

    """
    if workload not in WORKLOADS:
        raise SubmitError(f"cannot submit {workload!r}: use one of {', '.join(WORKLOADS)}")
    return shlex.join(["python", "-m", "tagops.cli", workload, *args])


def job_env_vars(environ: Mapping[str, str], named: Sequence[str] = (), *, cwd: Path) -> dict[str, str]:
    """The variables the job gets from ``environ``: ``TAGOPS_*`` settings, :data:`PASSED_ENV`, ``named``.

    Secrets (:data:`SECRET_ENV`, names that say so, URLs with a password) pass only when ``named``; the
    cluster's address never does. Relative paths of :data:`PATH_ENV` are made absolute against ``cwd``.

    Raises:
        SubmitError: A named variable is not set here, or names the cluster's address.

    """
    passed: dict[str, str] = {}
    withheld: list[str] = []
    for name, value in sorted(environ.items()):
        if not (name.startswith("TAGOPS_") or name in PASSED_ENV) or name in CLUSTER_ENV:
            continue
        if name in SECRET_ENV or SECRET_NAME.search(name) or _has_password(value):
            withheld.append(name)
            continue
        passed[name] = value
    for name in named:
        if name in CLUSTER_ENV:
            raise SubmitError(f"--env {name}: the job joins the cluster it runs on; {name} is not passed")
        if name not in environ:
            raise SubmitError(f"--env {name}: {name} is not set in this environment")
        passed[name] = environ[name]
    for name in PATH_ENV & passed.keys():
        if passed[name]:
            passed[name] = str((cwd / Path(passed[name]).expanduser()).resolve())
    withheld = [name for name in withheld if name not in passed]
    if withheld:
        logger.info("not passed to the job (secrets; pass with --env NAME): %s", ", ".join(withheld))
    return passed


def _has_password(value: str) -> bool:
    with contextlib.suppress(ValueError):
        return "://" in value and bool(urlsplit(value).password)
    return False


def stage_args(args: Sequence[str], *, cwd: Path, staging: Path) -> list[str]:
    """Copy the local files and folders ``args`` name into ``staging``; the args with the copies' paths.

    ``staging`` becomes the job's working folder (its current folder on the cluster), so a relative path
    inside ``cwd`` keeps its spelling and any other path (absolute, or leading out of ``cwd``) becomes
    ``_files/N/NAME``. An argument that names nothing here is passed as it is (a path that exists only on
    the cluster, a model reference, a title).

    Raises:
        SubmitError: An output option (:data:`OUTPUT_OPTIONS`) is given a relative path.

    """
    staged: list[str] = []
    copies: dict[Path, str] = {}
    option: str | None = None
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            staged.append(f"{name}={_stage_value(name, value, cwd, staging, copies)}")
            option = None
        elif arg.startswith("-") and not _is_number(arg):
            staged.append(arg)
            option = arg
        else:
            staged.append(_stage_value(option, arg, cwd, staging, copies))
            option = None
    return staged


def _stage_value(option: str | None, value: str, cwd: Path, staging: Path, copies: dict[Path, str]) -> str:
    if option in OUTPUT_OPTIONS:
        if not Path(value).expanduser().is_absolute():
            raise SubmitError(
                f"{option} {value}: the job runs in a temporary folder on the cluster, where a relative "
                "path is lost; give an absolute path on storage the cluster writes to"
            )
        return value
    if option in TEXT_OPTIONS or not value or value in (".", ".."):
        return value
    local = (cwd / Path(value).expanduser()).resolve()
    if not local.exists():
        if option is not None and _looks_like_a_path(value):
            logger.info(
                "%s %s: not found here; passed as it is (it must exist on the cluster)", option, value
            )
        return value
    if local in copies:
        return copies[local]
    relative = Path(value)
    inside = (
        not relative.is_absolute()
        and ".." not in relative.parts
        and not value.startswith("~")
        and local.is_relative_to(cwd.resolve())
    )
    target = relative if inside else Path(OUTSIDE_FILES) / str(len(copies)) / local.name
    destination = staging / target
    destination.parent.mkdir(parents=True, exist_ok=True)
    if local.is_dir():
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(local, destination, ignore=ignore, dirs_exist_ok=True)
    else:
        shutil.copy2(local, destination)
    copies[local] = target.as_posix()
    logger.info("shipping %s with the job as %s", value, copies[local])
    return copies[local]


def _looks_like_a_path(value: str) -> bool:
    return ":" not in value and not _is_number(value) and ("/" in value or bool(Path(value).suffix))


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


def package_dir() -> Path:
    """The folder of the ``tagops`` package this process runs (what the job ships as ``py_modules``)."""
    return Path(tagops.__file__).resolve().parent


def runtime_env(env_vars: Mapping[str, str], working_dir: Path) -> dict[str, Any]:
    """The job's runtime environment: this tagops package, the staged files, the passed variables.

    ``py_modules`` ships the ``tagops`` package folder itself, so the job runs the submitter's code even
    on a cluster with an older tagops installed (the cluster provides the dependencies). The working folder
    is a staging folder holding only the files the arguments name, not the current folder: that may hold
    a virtualenv, data and the whole ``TAGOPS_HOME``, none of which the job should upload.
    """
    return {
        "py_modules": [str(package_dir())],
        "working_dir": str(working_dir),
        "excludes": ["__pycache__/", "*.pyc"],
        "env_vars": dict(env_vars),
    }


def submit(
    client: Any, request: JobRequest, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> str:
    """Submit ``request`` through ``client`` (a ``JobSubmissionClient``); returns the job's id.

    Raises:
        SubmitError: The request is invalid here (see :func:`stage_args`, :func:`job_env_vars`) or the
            cluster refused it.

    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    as_given = build_entrypoint(request.workload, request.args)  # a bad workload fails before any work
    env_vars = job_env_vars(environ, request.env, cwd=cwd)
    if "TAGOPS_HOME" not in env_vars:
        logger.info("TAGOPS_HOME is not set here: the job uses the cluster's (set it to share one)")
    submission_id = request.submission_id or f"tagops-{request.workload}-{uuid.uuid4().hex[:10]}"
    # The staging folder is uploaded by submit_job itself (to the cluster's GCS), so it can go afterwards.
    with tempfile.TemporaryDirectory(prefix="tagops-job-") as staging:
        args = stage_args(request.args, cwd=cwd, staging=Path(staging))
        entrypoint = build_entrypoint(request.workload, args)
        if entrypoint != as_given:
            logger.info("entrypoint with the shipped files: %s", entrypoint)
        try:
            job_id: str = client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env(env_vars, Path(staging)),
                metadata={"tagops.workload": request.workload, "tagops.version": tagops.__version__},
                entrypoint_num_cpus=request.num_cpus,
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise SubmitError(f"the cluster did not accept the job: {error}") from error
    logger.info("submitted job %s: %s", job_id, entrypoint)
    return job_id


# ------------------------------------------------------------------------------------- following it
def exit_code(status: str) -> int:
    """``tagops submit``'s exit code for a job status: 1 for FAILED or STOPPED, else 0."""
    return 1 if status in ("FAILED", "STOPPED") else 0


def _status(value: Any) -> str:
    """A ``JobStatus`` (a str enum) or a string, as its plain name."""
    return str(getattr(value, "value", value))


def outcome(client: Any, job_id: str) -> JobOutcome:
    """Where the job stands now.

    Raises:
        SubmitError: The cluster has no such job.

    """
    try:
        info = client.get_job_info(job_id)
    except RuntimeError as error:
        raise SubmitError(f"no job {job_id!r} on the cluster: {error}") from error
    return JobOutcome(job_id, _status(info.status), short_message(info.message))


def short_message(message: str | None) -> str | None:
    """Ray's message about a job without the copy of the job's last logs it appends to a failure's."""
    if not message:
        return message
    first = message.strip().splitlines()[0]
    return re.sub(r",? last available logs.*$", "", first).rstrip(":")


def follow(
    client: Any,
    job_id: str,
    write: Callable[[str], object],
    *,
    poll_s: float = 1.0,
) -> JobOutcome:
    """Write the job's logs with ``write`` as they come, until the job ends; returns its outcome.

    The logs are streamed (``tail_job_logs``); where the stream fails (a proxy in front of the dashboard
    that drops websockets), they are polled (``get_job_logs``) and only what is new is written.
    """
    streamed = [0]  # characters the stream wrote
    shown: int | None = None  # where polling takes over; None: the stream reached the job's end
    try:
        asyncio.run(_tail(client, job_id, write, streamed))
    except Exception as error:  # aiohttp's and Ray's errors alike: the logs can still be polled
        shown = streamed[0]
        logger.info("the log stream of job %s failed (%s); polling its logs instead", job_id, error)
    while True:
        if shown is not None:
            logs = client.get_job_logs(job_id)
            if len(logs) > shown:  # the stream and the log file hold the same text: write what is new
                write(logs[shown:])
                shown = len(logs)
        status = _status(client.get_job_status(job_id))
        if status in TERMINAL:
            return outcome(client, job_id)
        time.sleep(poll_s)


async def _tail(client: Any, job_id: str, write: Callable[[str], object], streamed: list[int]) -> None:
    async for chunk in client.tail_job_logs(job_id):
        write(chunk)
        streamed[0] += len(chunk)


def run_job(
    client: Any,
    request: JobRequest,
    *,
    wait: bool,
    write: Callable[[str], object],
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> JobOutcome:
    """Submit ``request``; with ``wait``, follow it to its end (logs through ``write``)."""
    job_id = submit(client, request, environ=environ, cwd=cwd)
    if not wait:
        return outcome(client, job_id)
    return follow(client, job_id, write)
