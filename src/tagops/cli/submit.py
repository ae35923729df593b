"""`tagops submit train|tune|retrain|predict [ARGS...]` and `tagops submit status|logs|stop JOB_ID`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from tagops.cli.exit_codes import ExitCode
from tagops.cli.output import command_group, print_json
from tagops.cli.params import number

submit_app = command_group(
    "Run a workload on a Ray cluster as a Ray Job, and follow, inspect or stop jobs.\n\n"
    "The cluster is the Ray dashboard's URL: --address, else RAY_JOB_ADDRESS, else RAY_ADDRESS when it "
    "is an http(s) URL."
)

AddressOption = Annotated[
    str | None,
    typer.Option(help="The Ray dashboard's URL, e.g. http://HEAD:8265 (default: RAY_JOB_ADDRESS)."),
]

#: A workload's own options pass through unparsed: every argument `tagops submit` does not know goes to
#: the workload (`--` passes the rest as it is, e.g. an option of the same name as one of submit's).
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _workload_command(workload: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        address: AddressOption = None,
        wait: Annotated[
            bool, typer.Option(help="Follow the job's logs (stderr) to its end; exit 1 if it fails.")
        ] = True,
        job_id: Annotated[
            str | None, typer.Option(help="The job's submission id (default: tagops-WORKLOAD-RANDOM).")
        ] = None,
        num_cpus: Annotated[
            float | None,
            typer.Option(
                parser=number(0.0),
                metavar="<float>",
                help="CPUs to reserve on the cluster for the workload's driver.",
            ),
        ] = None,
        env: Annotated[
            list[str] | None,
            typer.Option(
                "--env",
                metavar="NAME",
                help="Also pass this variable from here (repeatable; secrets go only this way).",
            ),
        ] = None,
    ) -> None:
        import os

        from tagops.workloads.submit import JobRequest, job_client, resolve_address, run_job

        request = JobRequest(
            workload=workload,
            args=tuple(ctx.args),
            env=tuple(env or ()),
            submission_id=job_id,
            num_cpus=num_cpus,
        )
        client = job_client(resolve_address(address, os.environ))
        try:
            result = run_job(client, request, wait=wait, write=_to_stderr)
        except KeyboardInterrupt:
            typer.echo(
                "\nerror: stopped following the job; it keeps running on the cluster "
                "(tagops submit status|logs|stop JOB_ID)",
                err=True,
            )
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        print_json(result.to_json())
        if result.exit_code:  # FAILED or STOPPED
            typer.echo(f"error: job {result.job_id} {result.status}: {result.message}", err=True)
            raise typer.Exit(ExitCode.ERROR)

    command.__doc__ = (
        f"`tagops {workload} ARGS` as a Ray Job on the cluster, with this tagops code and its settings.\n\n"
        "Local files the arguments name (e.g. --config) are shipped with the job; TAGOPS_* settings, "
        "MLFLOW_TRACKING_URI and the offline switches are passed, secrets only with --env NAME."
    )
    command.__name__ = workload
    return command


def _to_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


for _workload in ("train", "tune", "retrain", "predict"):
    submit_app.command(_workload, context_settings=_PASS_THROUGH)(_workload_command(_workload))


@submit_app.command("status")
def status(
    job_id: Annotated[str, typer.Argument(help="The job's id.")], address: AddressOption = None
) -> None:
    """Where a job stands: its status and Ray's message, as JSON."""
    import os

    from tagops.workloads.submit import job_client, outcome, resolve_address

    client = job_client(resolve_address(address, os.environ))
    print_json(outcome(client, job_id).to_json())


@submit_app.command("logs")
def logs(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    address: AddressOption = None,
    follow: Annotated[bool, typer.Option(help="Keep printing until the job ends.")] = False,
) -> None:
    """A job's logs so far on stdout (with --follow: until it ends)."""
    import os

    from tagops.workloads.submit import SubmitError, job_client, resolve_address
    from tagops.workloads.submit import follow as follow_job

    client = job_client(resolve_address(address, os.environ))
    if follow:
        follow_job(client, job_id, _to_stdout)
        return
    try:
        text: Any = client.get_job_logs(job_id)
    except RuntimeError as error:
        raise SubmitError(f"no job {job_id!r} on the cluster: {error}") from error
    _to_stdout(text)


def _to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@submit_app.command("stop")
def stop(job_id: Annotated[str, typer.Argument(help="The job's id.")], address: AddressOption = None) -> None:
    """Ask the cluster to stop a job (its driver gets SIGTERM); prints where it stands, as JSON."""
    import os

    from tagops.workloads.submit import SubmitError, job_client, outcome, resolve_address

    client = job_client(resolve_address(address, os.environ))
    try:
        client.stop_job(job_id)
    except RuntimeError as error:
        raise SubmitError(f"no job {job_id!r} on the cluster: {error}") from error
    print_json(outcome(client, job_id).to_json())
