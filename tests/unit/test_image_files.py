"""The container image's files, read without a Docker engine: the Dockerfile's stages, the compose stack,
the build context, the scripts the image runs and the pins they share with the Makefile and pyproject.toml.

What needs an install (docker/install.sh into a fresh venv, docker/start.sh serving from it) is
tests/integration/test_image_scripts.py.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tagops.model_ref import DEFAULT_MODEL_URI
from tagops.settings import QUIET_ENVIRONMENT, RetrainSettings, ServeSettings, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


# ------------------------------------------------------------------------------------------ Dockerfile
@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: continuation lines joined, comments (also inside them) dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return found


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions((ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            result.append([])
        assert result, f"{instruction.keyword} before the first FROM"
        result[-1].append(instruction)
    return result


def of(stage: list[Instruction], keyword: str) -> list[str]:
    return [each.args for each in stage if each.keyword == keyword]


def exec_form(args: str) -> list[str]:
    """An instruction's JSON array (exec form); fails on the shell form."""
    start = args.index("[")
    value = json.loads(args[start:])
    assert isinstance(value, list), args
    return [str(each) for each in value]


def env_values(stage: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in of(stage, "ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            values[key] = value
    return values


def test_the_image_is_built_in_two_stages_on_the_same_slim_python() -> None:
    builder, final = stages()
    assert builder[0].args == "python:3.11-slim-bookworm AS builder"
    assert final[0].args == "python:3.11-slim-bookworm"
    runs = of(builder, "RUN")
    # Both install steps run the script CI runs: first the pinned dependencies, then the project's wheel.
    assert "docker/install.sh --dependencies-only /opt/venv /src" in runs
    assert "docker/install.sh /opt/venv /src" in runs
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in of(builder, "ARG")
    assert {'MODEL_URI=""', 'MLFLOW_TRACKING_URI=""'} <= set(of(builder, "ARG"))
    bake = next(run for run in runs if "models pull" in run)
    assert 'tagops models pull "$MODEL_URI" --output /opt/tagops/model' in bake


def test_the_final_stage_takes_only_the_venv_and_the_model_from_the_builder() -> None:
    _, final = stages()
    copied = [args for args in of(final, "COPY") if args.startswith("--from=")]
    assert copied == ["--from=builder /opt/venv /opt/venv", "--from=builder /opt/tagops /opt/tagops"]
    text = " ".join(each.args for each in final).lower()
    for tool in ("gcc", "g++", "build-essential", "make ", "cmake", "clang", "-dev ", "pip install", "git "):
        assert tool not in text, f"the final stage mentions {tool.strip()!r}"
    installs = [run for run in of(final, "RUN") if "apt-get install" in run]
    packages = {
        word.split("=")[0]
        for run in installs
        for word in run.split("apt-get install", 1)[1].split("&&")[0].split()
        if not word.startswith("-")
    }
    assert packages <= {"wget"}, packages


def test_the_final_stage_runs_as_a_fixed_non_root_user_owning_tagops_home() -> None:
    _, final = stages()
    user = of(final, "USER")[-1]
    name, _, group = user.partition(":")
    assert name not in ("root", "0") and group not in ("root", "0")
    assert name == "10001"
    setup = " ".join(of(final, "RUN"))
    assert "useradd --system --uid 10001" in setup
    env = env_values(final)
    assert env["TAGOPS_HOME"] == "/var/lib/tagops" == env["HOME"]
    assert "install -d -o tagops -g tagops -m 0750 /var/lib/tagops" in setup
    assert env["PATH"].startswith(env["TAGOPS_VENV"] + "/bin:")
    assert env["TAGOPS_VENV"] == "/opt/venv"


def test_the_final_stage_serves_on_8000_with_a_healthcheck_and_the_start_script() -> None:
    _, final = stages()
    assert of(final, "EXPOSE") == ["8000"]
    (healthcheck,) = of(final, "HEALTHCHECK")
    command = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python" and command[1].endswith("/docker/healthcheck.py")
    (entrypoint,) = of(final, "ENTRYPOINT")
    script = exec_form(entrypoint)
    assert len(script) == 1 and script[0].endswith("docker/start.sh")
    # Both scripts are where the final stage copies them.
    (copy,) = [args for args in of(final, "COPY") if "docker/start.sh" in args]
    *sources, target = copy.split()
    assert sources == ["docker/start.sh", "docker/healthcheck.py"]
    assert {target + Path(source).name for source in sources} == {script[0], command[1]}
    for source in sources:
        assert os.access(ROOT / source, os.X_OK) or source.endswith(".py")


# ------------------------------------------------------------------------------------------------ pins
def torch_pin(text: str, pattern: str) -> str:
    found = re.findall(pattern, text)
    assert len(set(found)) == 1, found
    return str(found[0])


def test_torch_is_pinned_once_everywhere() -> None:
    install = torch_pin((DOCKER / "install.sh").read_text(encoding="utf-8"), r"(?m)^TORCH_VERSION=(\S+)$")
    makefile = torch_pin((ROOT / "Makefile").read_text(encoding="utf-8"), r"torch==([\w.+]+)")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (pyproject,) = [
        str(r.specifier) for r in map(Requirement, dependencies["dependencies"]) if r.name == "torch"
    ]
    constraints = pinned_constraints()["torch"]
    assert install == makefile == pyproject.removeprefix("==") == constraints


def pinned_constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (DOCKER / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and "+" not in version, f"not a plain pin: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_image_constraints_hold_the_projects_own_pins() -> None:
    """docker/constraints.txt must be written again when a dependency changes (its header says how)."""
    pins = pinned_constraints()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    stale = []
    for requirement in map(Requirement, dependencies["dependencies"]):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            stale.append(f"{requirement} (constraints: {version})")
    assert not stale, "docker/constraints.txt is stale: " + ", ".join(stale)
    assert "tagops" not in pins


# --------------------------------------------------------------------------------------- build context
def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (``**`` spans folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path, or a folder above it, decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    decision = False
    for pattern in patterns:
        regex = pattern_regex(pattern.removeprefix("!").rstrip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            decision = not pattern.startswith("!")
    return decision


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_local_state() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = [
        source
        for stage in stages()
        for args in of(stage, "COPY")
        if not args.startswith("--from=")
        for source in args.split()[:-1]
    ]
    assert {"pyproject.toml", "README.md", "src", "configs"} <= set(copied)
    for source in copied:
        files = [ROOT / source] if (ROOT / source).is_file() else sorted((ROOT / source).rglob("*"))
        kept = [
            path
            for path in files
            if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path)
        ]
        assert kept, source
        for path in kept:
            relative = path.relative_to(ROOT).as_posix()
            assert not ignored(relative, patterns), f"{relative} is copied but left out of the build context"
    for local in (".venv/bin/python", ".git/HEAD", ".tagops/mlflow/mlflow.db", "tests/conftest.py",
                  "benchmarks/results/x.json", "src/tagops/__pycache__/cli.cpython-311.pyc",
                  "src/tagops.egg-info/PKG-INFO", ".github/workflows/ci.yml", "docs/index.md"):  # fmt: skip
        assert ignored(local, patterns), f"{local} would be sent to the builder"


# ---------------------------------------------------------------------------------------------- compose
def compose() -> dict[str, Any]:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    # ${NAME:-default} as compose resolves it when NAME is unset.
    resolved = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)
    loaded: dict[str, Any] = yaml.safe_load(resolved)
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def tagops_image() -> str:
    """The image deploy/render.py writes into the RayService (read, not imported: it imports Ray Serve)."""
    text = (ROOT / "deploy" / "render.py").read_text(encoding="utf-8")
    (image,) = re.findall(r'(?m)^IMAGE = "([^"]+)"$', text)
    return str(image)


def test_compose_tagops_services_rayservice_and_render_name_one_image() -> None:
    services = compose()["services"]
    images = {name: service.get("image") for name, service in services.items()}
    assert images["tagops"] == images["mlflow"] == tagops_image() == "ghcr.io/tagops/tagops:0.1.0"
    assert services["tagops"]["build"]["context"] == "."
    rayservice = yaml.safe_load((ROOT / "deploy" / "rayservice.yaml").read_text(encoding="utf-8"))
    cluster = rayservice["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    assert {c["image"] for pod in pods for c in pod["containers"]} == {images["tagops"]}
    header = (ROOT / "deploy" / "rayservice.yaml").read_text(encoding="utf-8").split("\napiVersion:")[0]
    assert "Dockerfile" in header and "rayproject/ray" not in header


def test_prometheus_scrapes_the_tagops_service_on_its_port() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    mount = next(v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((ROOT / mount.split(":")[0]).read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (target,) = job["static_configs"][0]["targets"]
    host, _, port = target.partition(":")
    assert host == "tagops" and host in services
    published = [p.rsplit(":", 1)[1] for p in services["tagops"]["ports"]]
    assert port == "8000" == environment(services["tagops"]).get("TAGOPS_PORT", "8000")
    assert published == [port]
    assert of(stages()[-1], "EXPOSE") == [port]


def test_compose_databases_are_the_ones_team_up_creates() -> None:
    from sqlalchemy.engine import make_url

    from tagops.cli import team

    prefix = inspect.signature(team.up).parameters["prefix"].default
    services = compose()["services"]
    command = services["mlflow"]["command"]
    backend = make_url(command[command.index("--backend-store-uri") + 1])
    log = make_url(environment(services["tagops"])["TAGOPS_SERVE_DATABASE_URL"])
    assert (backend.database, log.database) == (f"{prefix}_mlflow", f"{prefix}_log")
    for url in (backend, log):
        assert url.drivername == "postgresql+psycopg" and url.host == "postgres" and url.port == 5432
        assert url.username == environment(services["postgres"])["POSTGRES_USER"]
        assert url.password == environment(services["postgres"])["POSTGRES_PASSWORD"]
    init = (DOCKER / "postgres-init.sql").read_text(encoding="utf-8")
    created = re.findall(r"(?im)^CREATE DATABASE (\w+);", init)
    assert sorted(created) == sorted([backend.database, log.database])
    mount = f"./docker/postgres-init.sql:/docker-entrypoint-initdb.d/{prefix}.sql:ro"
    assert mount in services["postgres"]["volumes"]
    # The MLflow server runs as `tagops team up` starts it.
    source = inspect.getsource(team.up)
    for key in ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "MLFLOW_DISABLE_TELEMETRY"):
        assert f'"{key}": "{environment(services["mlflow"])[key]}"' in source
    assert {"--artifacts-destination", "/mlartifacts", "--serve-artifacts"} <= set(command)
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert environment(services["tagops"])["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["tagops"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "mlflow": {"condition": "service_healthy"},
    }


def settings_variables() -> set[str]:
    """Every variable tagops' settings read."""
    names: set[str] = set()
    for model in (Settings, ServeSettings, RetrainSettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        for name, field in model.model_fields.items():
            choices = getattr(field.validation_alias, "choices", None)
            if choices:
                names.update(str(choice) for choice in choices)
            elif field.annotation not in (ServeSettings, RetrainSettings):
                names.add(f"{prefix}{name}".upper())
    return names


def start_script_variables() -> set[str]:
    return set(re.findall(r"\$\{(\w+)", (DOCKER / "start.sh").read_text(encoding="utf-8")))


def mlflow_variables() -> set[str]:
    spec = importlib.util.find_spec("mlflow")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "environment_variables.py").read_text(encoding="utf-8")
    return set(re.findall(r'EnvironmentVariable\(\s*"(MLFLOW_\w+)"', source))


def test_every_compose_variable_is_one_its_program_reads() -> None:
    services = compose()["services"]
    read_by_image = (
        settings_variables() | start_script_variables() | set(QUIET_ENVIRONMENT) | mlflow_variables()
    )
    assert {
        "TAGOPS_SERVE_DATABASE_URL",
        "MLFLOW_TRACKING_URI",
        "TAGOPS_ENGINE",
        "TAGOPS_VENV",
    } <= read_by_image
    assert {"MLFLOW_SERVER_ALLOWED_HOSTS", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"} <= read_by_image
    # The postgres image's documented variables.
    read = {
        "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_INITDB_ARGS", "PGDATA"}
    }
    for name, service in services.items():
        known = read.get(name, read_by_image if service.get("image") == tagops_image() else set())
        unknown = set(environment(service)) - known
        assert not unknown, f"{name}: nothing reads {sorted(unknown)}"
    assert {"TAGOPS_SERVE_DATABASE_URL", "MLFLOW_TRACKING_URI"} <= set(environment(services["tagops"]))


def test_every_service_that_others_wait_for_has_a_healthcheck() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"
    # The MLflow container must not inherit the image's check of the API's port.
    check = services["mlflow"]["healthcheck"]["test"]
    assert check[-1] == "http://127.0.0.1:5000/health" and check[-2].endswith("docker/healthcheck.py")


# -------------------------------------------------------------------------------------------- scripts
def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_healthcheck", DOCKER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_exits_0_only_for_a_200(
    http_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    healthcheck = load_healthcheck()
    assert healthcheck.main([f"{http_server}/healthz"]) == 0
    assert healthcheck.main([f"{http_server}/readyz"]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    closed = http_server.rsplit(":", 1)[0] + ":1/healthz"
    assert healthcheck.main([closed, "--timeout", "2"]) == 1
    assert healthcheck.main(["not a url"]) == 1
    # The default: this host's /healthz on TAGOPS_PORT (8000 when unset), or TAGOPS_HEALTHCHECK_URL.
    monkeypatch.delenv("TAGOPS_HEALTHCHECK_URL", raising=False)
    monkeypatch.setenv("TAGOPS_PORT", http_server.rsplit(":", 1)[1])
    assert healthcheck.main([]) == 0
    monkeypatch.delenv("TAGOPS_PORT")
    assert healthcheck.default_url() == "http://127.0.0.1:8000/healthz"
    monkeypatch.setenv("TAGOPS_HEALTHCHECK_URL", f"{http_server}/readyz")
    assert healthcheck.main([]) == 1


def test_healthcheck_never_exits_2_which_docker_reserves() -> None:
    result = subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    """A venv whose `tagops` prints the arguments it was given, one a line."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    tagops = venv / "bin" / "tagops"
    tagops.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n', encoding="utf-8")
    tagops.chmod(tagops.stat().st_mode | stat.S_IXUSR)
    return venv


def start(venv: Path, *args: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TAGOPS_")}
    result = subprocess.run(
        [str(DOCKER / "start.sh"), *args],
        env={**base, "TAGOPS_VENV": str(venv), "TAGOPS_MODEL_DIR": str(venv / "no-model"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_start_serves_the_registry_champion_on_all_interfaces_by_default(fake_venv: Path) -> None:
    assert start(fake_venv) == [
        "serve",
        *("--engine", "uvicorn", "--host", "0.0.0.0", "--port", "8000"),
        *("--model", DEFAULT_MODEL_URI),
    ]


def test_start_prefers_the_named_model_then_the_baked_one(fake_venv: Path, tmp_path: Path) -> None:
    baked = tmp_path / "model"
    baked.mkdir()
    (baked / "model.json").write_text("{}", encoding="utf-8")
    served = start(fake_venv, TAGOPS_MODEL_DIR=str(baked))
    assert served[served.index("--model") + 1] == str(baked)
    served = start(fake_venv, TAGOPS_MODEL_DIR=str(baked), TAGOPS_MODEL_URI="models:/tagops/3")
    assert served[served.index("--model") + 1] == "models:/tagops/3"


def test_start_reads_engine_address_and_config_and_passes_options_on(fake_venv: Path) -> None:
    served = start(
        fake_venv,
        "--replicas",
        "2",
        TAGOPS_ENGINE="ray",
        TAGOPS_HOST="127.0.0.1",
        TAGOPS_PORT="9000",
        TAGOPS_SERVE_CONFIG="/opt/tagops/configs/serve.yaml",
    )
    assert served[:7] == ["serve", "--engine", "ray", "--host", "127.0.0.1", "--port", "9000"]
    assert served[-4:] == ["--config", "/opt/tagops/configs/serve.yaml", "--replicas", "2"]


def test_start_runs_another_command_with_the_venv_first_on_path(fake_venv: Path) -> None:
    assert start(fake_venv, "tagops", "models", "list") == ["models", "list"]
    (path,) = start(fake_venv, "bash", "-c", 'echo "$PATH"')
    assert path.split(":")[0] == str(fake_venv / "bin")


def test_start_defaults_match_the_image() -> None:
    text = (DOCKER / "start.sh").read_text(encoding="utf-8")
    _, final = stages()
    assert "${TAGOPS_VENV:-/opt/venv}" in text and env_values(final)["TAGOPS_VENV"] == "/opt/venv"
    assert "${TAGOPS_MODEL_DIR:-/opt/tagops/model}" in text
    assert "${TAGOPS_PORT:-8000}" in text


@pytest.mark.parametrize(
    ("args", "env"),
    [((), {}), (("a", "b", "c"), {}), (("--dependencies-only", "venv"), {"CONSTRAINTS": ""})],
)
def test_install_refuses_a_bad_call_before_installing_anything(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    result = subprocess.run(
        [str(DOCKER / "install.sh"), *args],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / "venv").exists()
