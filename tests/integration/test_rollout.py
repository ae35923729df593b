"""`tagops rollout` end to end against a running service: a weighted, sticky canary share, its evidence,
an abort and a promotion by the policy, neither failing a request.

Two linear models are trained on the fixtures (version 1 champion, version 2 challenger) and version 1
is served by uvicorn on loopback. The CLI talks to the service with an admin key; a labeller key labels
the canary's and the champion's answers with the fixtures' tags.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tagops.config import DataConfig, LinearParams, TrainConfig
from tests.integration.helpers import isolated_home, run_cli, run_make, serving, train_linear_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Env:
    settings: Any
    root: Path
    url: str
    cli_env: dict[str, str]
    labeller: dict[str, str]
    dataset: pd.DataFrame
    config: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Env]:
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.registry.client import Registry
    from tagops.serving.keys import KeyStore
    from tagops.workloads.train import run_training

    root = tmp_path_factory.mktemp("rollout")
    with isolated_home(root / "home") as settings:
        registry = Registry(settings)
        cfg = TrainConfig(data=DataConfig(source_dir=fixture_dir), model=LinearParams())
        train_linear_champion(settings, fixture_dir, registry)
        second = cfg.model_copy(update={"model": LinearParams(C=5.0)})  # another model: version 2
        assert run_training(second, settings, registry=registry).version == 2
        store = PredictionLog(default_database_url(settings))
        store.create_tables()
        keys = KeyStore(store.engine)
        _, admin_key = keys.create("ops", "admin")
        _, labeller_key = keys.create("ann", "labeller")
        store.dispose()
        serve_yaml = root / "serve.yaml"
        serve_yaml.write_text(
            "engine: uvicorn\nlog_flush_interval_s: 0.05\nsync_interval_s: 0.2\n", encoding="utf-8"
        )
        config = root / "rollout.yaml"
        config.write_text(
            f"rollout:\n  train:\n    data: {{source_dir: {fixture_dir}}}\n"
            "  gate: {max_overall_f1_drop: 0.1, max_class_f1_drop: 0.2, behaviour: []}\n"
            # the subject is the decisions on labels: latency on a busy test machine is not
            "  policy: {min_requests: 100, min_labelled: 50, latency_slack_ms: 10000}\n",
            encoding="utf-8",
        )
        with serving(serve_yaml) as url:
            dataset = pd.read_csv(fixture_dir / "dataset.csv", dtype=str, keep_default_na=False)
            yield Env(
                settings,
                root,
                url,
                {"TAGOPS_RETRAIN_SERVICE_URL": url, "TAGOPS_RETRAIN_ADMIN_KEY": admin_key},
                {"Authorization": f"Bearer {labeller_key}"},
                dataset,
                config,
            )


def item(dataset: pd.DataFrame, i: int) -> dict[str, Any]:
    row = dataset.iloc[i % len(dataset)]
    return {"items": [{"title": f"{row['title']} {i}", "description": str(row["description"])}]}


class Load:
    """Threads sending predictions until stopped; every status and the version that answered."""

    def __init__(self, env: Env, threads: int = 4) -> None:
        self.env, self.stop = env, threading.Event()
        self.statuses: list[int] = []
        self.versions: list[int] = []
        self.workers = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]

    def run(self, n: int) -> None:
        with httpx.Client(base_url=self.env.url, timeout=30) as http:
            i = n * 100_000
            while not self.stop.is_set():
                response = http.post("/v1/predict", json=item(self.env.dataset, i))
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.versions.append(response.json()["model"]["version"])
                i += 1

    def __enter__(self) -> Load:
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(30)


def json_documents(text: str) -> list[Any]:
    """The JSON documents a run of commands printed one after another (make echoes its commands too)."""
    decoder, documents, i = json.JSONDecoder(), [], 0
    while (start := text.find("{", i)) != -1:
        try:
            document, i = decoder.raw_decode(text, start)
        except ValueError:
            i = start + 1
            continue
        documents.append(document)
    return documents


def rollout(env: Env, *args: str) -> dict[str, Any]:
    result = run_cli("rollout", *args, "--config", env.config, env=env.cli_env)
    assert result.returncode == 0, result.explain()
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_weight_10_routes_a_tenth_sticky_and_an_abort_under_load_fails_nothing(env: Env) -> None:
    started = rollout(env, "start", "--weight", "10")
    assert (started["champion_version"], started["canary_version"], started["weight"]) == (1, 2, 10.0)
    with httpx.Client(base_url=env.url, timeout=30) as http:
        versions = [
            http.post("/v1/predict", json=item(env.dataset, i)).json()["model"]["version"]
            for i in range(2000)
        ]
        again = [
            http.post("/v1/predict", json=item(env.dataset, i)).json()["model"]["version"] for i in range(100)
        ]
    share = versions.count(2) / len(versions)
    assert 0.07 <= share <= 0.13, share
    assert again == versions[:100]
    # A replica adds its counts to the database at each sync; reading the rollout through the API writes
    # them at once, so the status read from the database that follows sees every request.
    admin = {"Authorization": f"Bearer {env.cli_env['TAGOPS_RETRAIN_ADMIN_KEY']}"}
    assert httpx.get(f"{env.url}/v1/admin/rollout", headers=admin, timeout=30).status_code == 200
    status = rollout(env, "status", "--json")
    assert status["canary"]["requests"] == versions.count(2) + again.count(2)
    assert (
        status["canary"]["predictions"] == status["canary"]["requests"]
    )  # every answer logged with its model
    assert status["decision"]["action"] == "continue"  # nothing labelled yet
    with Load(env) as load:
        ended = rollout(env, "abort", "--reason", "test abort")
    assert ended["state"] == "aborted" and ended["reason"] == "test abort"
    assert load.statuses and set(load.statuses) == {200}
    with httpx.Client(base_url=env.url, timeout=30) as http:
        after = {
            http.post("/v1/predict", json=item(env.dataset, i)).json()["model"]["version"] for i in range(100)
        }
    assert after == {1}


def test_the_policy_promotes_a_canary_that_is_no_worse_and_no_request_fails(env: Env) -> None:
    from tagops.workloads.promote import read_history

    rollout(env, "start", "--weight", "50")
    with httpx.Client(base_url=env.url, timeout=30) as http:
        for i in range(400):
            answer = http.post("/v1/predict", json=item(env.dataset, i)).json()
            truth = str(env.dataset.iloc[i % len(env.dataset)]["tag"])
            stored = http.post(
                "/v1/feedback",
                json={"prediction_id": answer["predictions"][0]["prediction_id"], "tag": truth},
                headers=env.labeller,
            )
            assert stored.status_code == 201, stored.text
    checked = rollout(env, "check")
    assert checked["action"] == "promote" and checked["applied"] is False, checked
    with Load(env) as load:
        applied = rollout(env, "check", "--apply")
    assert applied["applied"] is True and applied["outcome"]["reload"]["current"]["version"] == 2
    assert load.statuses and set(load.statuses) == {200}
    assert {1, 2} <= set(load.versions)
    with httpx.Client(base_url=env.url, timeout=30) as http:
        info = http.get("/v1/model").json()
        after = {
            http.post("/v1/predict", json=item(env.dataset, i)).json()["model"]["version"] for i in range(100)
        }
    assert info["version"] == 2 and info["canary"] is None and after == {2}
    record = read_history(env.settings.promotion_history)[-1]
    assert record["action"] == "promote" and record["version"] == 2
    assert record["trigger"].startswith("canary rollout since ") and "no worse" in record["trigger"]
    assert rollout(env, "status", "--json")["state"] == "promoted"


def test_the_deploy_workflow_step_canaries_a_new_challenger_and_the_policy_promotes_it(env: Env) -> None:
    """`make deploy-canary` (the deploy workflow's step) while labelled traffic flows: promoted, exit 0."""
    from tagops.config import LinearParams, TrainConfig
    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    cfg = TrainConfig(
        data=DataConfig(source_dir=Path(__file__).parents[1] / "fixtures"), model=LinearParams(C=2.0)
    )
    third = run_training(cfg, env.settings, registry=Registry(env.settings))
    assert third.version == 3
    stop = threading.Event()

    def labelled_traffic() -> None:
        with httpx.Client(base_url=env.url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                answer = http.post("/v1/predict", json=item(env.dataset, 500_000 + i)).json()
                truth = str(env.dataset.iloc[i % len(env.dataset)]["tag"])
                http.post(
                    "/v1/feedback",
                    json={"prediction_id": answer["predictions"][0]["prediction_id"], "tag": truth},
                    headers=env.labeller,
                )
                i += 1

    sender = threading.Thread(target=labelled_traffic)
    sender.start()
    try:
        result = run_make(
            "deploy-canary",
            env=env.cli_env,
            WEIGHT="50",
            WAIT="240s",
            EVERY="1s",
            ROLLOUT_CONFIG=env.config,
        )
    finally:
        stop.set()
        sender.join(30)
    assert result.returncode == 0, result.explain()
    started, decided = json_documents(result.stdout)
    assert started["canary_version"] == 3 and started["weight"] == 50.0
    assert decided["action"] == "promote" and decided["applied"] is True
    assert httpx.get(f"{env.url}/v1/model", timeout=30).json()["version"] == 3


def test_the_deploy_step_fails_when_the_policy_stays_undecided(env: Env) -> None:
    """No labels in the wait: `rollout check --wait` exits 5 and the workflow fails; the rollout goes on."""
    from tagops.config import LinearParams, TrainConfig
    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    cfg = TrainConfig(
        data=DataConfig(source_dir=Path(__file__).parents[1] / "fixtures"), model=LinearParams(C=3.0)
    )
    assert run_training(cfg, env.settings, registry=Registry(env.settings)).version == 4
    result = run_make(
        "deploy-canary", env=env.cli_env, WEIGHT="10", WAIT="3s", EVERY="1s", ROLLOUT_CONFIG=env.config
    )
    assert result.returncode != 0
    assert json_documents(result.stdout)[-1]["action"] == "continue" and "Error 5" in result.stderr
    assert rollout(env, "status", "--json")["state"] == "active"
    assert rollout(env, "abort", "--reason", "undecided")["state"] == "aborted"
