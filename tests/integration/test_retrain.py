"""`tagops retrain` end to end on the fixtures: feedback from a running service's log → challenger → gates →
champion → the service reloads and serves it; the promotion history records why.

A linear champion is trained on the synthetic fixtures and served (uvicorn, loopback, challenger in
shadow). Traffic in a new vocabulary (the fixture projects with every word spelled backwards) is sent
through the service, labelled through /v1/feedback with an admin key (plus a labeller's contrary label,
which the admin's outranks, and a duplicate of a known title). A client key sends 1,000 wrong labels for
one phrase, in case and spacing variants; a labeller labels five texts and is then revoked. Then
`tagops retrain --if-needed` (the ZenML pipeline) runs with a monitor summary that alarms.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.integration.helpers import isolated_home, predict_frame, run_cli, serving, train_linear_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Env:
    settings: Any
    root: Path
    url: str
    admin_key: str
    champion: int
    sent: int
    phrase: dict[str, str]
    phrase_tag: str
    revoked_titles: list[str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Env]:

    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.registry.client import Registry
    from tagops.serving.keys import KeyStore
    from tagops.serving.state import ServingState
    from tagops.simulation.traffic import shifted_frame

    root = tmp_path_factory.mktemp("retrain")
    with isolated_home(root / "home") as settings:
        registry = Registry(settings)
        first_version = train_linear_champion(settings, fixture_dir, registry)
        store = PredictionLog(default_database_url(settings))
        ServingState(store.engine).create_tables()
        keys = KeyStore(store.engine)
        _, admin_key = keys.create("test", "admin")
        _, labeller_key = keys.create("second opinion", "labeller")
        _, mallory_key = keys.create("mallory", "client")
        leaving, leaving_key = keys.create("leaving", "labeller")
        serve_yaml = root / "serve.yaml"
        serve_yaml.write_text(
            "engine: uvicorn\nshadow_model_uri: models:/tagops@challenger\nlog_flush_interval_s: 0.05\n"
            # limits that let every one of the attacker's labels be stored: trust alone must hold
            "feedback_limits: {client: {per_minute: 100000, per_day: 100000}}\n",
            encoding="utf-8",
        )
        with serving(serve_yaml) as url:
            dataset = pd.read_csv(fixture_dir / "dataset.csv", dtype=str, keep_default_na=False)
            shifted = shifted_frame(dataset)
            headers = {"Authorization": f"Bearer {admin_key}"}
            with httpx.Client(base_url=url, timeout=60) as http:
                ids = predict_frame(http, shifted)
                known = http.post("/v1/predict", json={"items": [{"title": str(dataset["title"][0])}]}).json()
                labels = [*zip(ids, shifted["tag"], strict=True)]
                labels.append((known["predictions"][0]["prediction_id"], str(dataset["tag"][0])))
                for prediction_id, tag in labels:
                    answer = http.post(
                        "/v1/feedback", json={"prediction_id": prediction_id, "tag": tag}, headers=headers
                    )
                    assert answer.status_code == 201, answer.text
                contrary = "other" if shifted["tag"][0] != "other" else "mlops"
                answer = http.post(
                    "/v1/feedback",
                    json={"prediction_id": ids[0], "tag": contrary},
                    headers={"Authorization": f"Bearer {labeller_key}"},
                )
                assert answer.status_code == 201 and answer.json()["status"] == "trusted", answer.text
                # The attack: one phrase in the champion's vocabulary, 1,000 wrong labels from one key.
                phrase = {
                    "title": f"{dataset['title'][1]} toolkit",
                    "description": str(dataset["description"][1]),
                }
                phrase_tag = http.post("/v1/predict", json={"items": [phrase]}).json()["predictions"][0][
                    "tag"
                ]
                wrong = next(t for t in sorted(set(dataset["tag"])) if t != phrase_tag)
                variants = [
                    {
                        "title": f"{phrase['title'].upper() if i % 2 else phrase['title']}{'  ' * i}",
                        "description": phrase["description"],
                    }
                    for i in range(10)
                ]
                attacked = [
                    p["prediction_id"]
                    for p in http.post("/v1/predict", json={"items": variants}).json()["predictions"]
                ]
                attacker = {"Authorization": f"Bearer {mallory_key}"}
                for i in range(1000):
                    answer = http.post(
                        "/v1/feedback",
                        json={"prediction_id": attacked[i % 10], "tag": wrong},
                        headers=attacker,
                    )
                    assert answer.status_code == 201 and answer.json()["status"] == "pending_review", (
                        answer.text
                    )
                # A labeller labels five new texts, then its key is revoked.
                revoked_titles = [f"Tsal sdrow {i} gnivael" for i in range(5)]
                departed = [
                    p["prediction_id"]
                    for p in http.post(
                        "/v1/predict",
                        json={"items": [{"title": t, "description": "ylno"} for t in revoked_titles]},
                    ).json()["predictions"]
                ]
                for prediction_id in departed:
                    answer = http.post(
                        "/v1/feedback",
                        json={"prediction_id": prediction_id, "tag": "mlops"},
                        headers={"Authorization": f"Bearer {leaving_key}"},
                    )
                    assert answer.status_code == 201, answer.text
                keys.revoke(leaving.key_id)
                store.dispose()
            yield Env(
                settings,
                root,
                url,
                admin_key,
                first_version,
                len(ids)
                + 1
                + 1
                + 10
                + 5,  # labelled, the known title, the phrase, its variants, the departed
                phrase,
                phrase_tag,
                revoked_titles,
            )


def test_retrain_if_needed_learns_the_feedback_promotes_and_reloads(env: Env) -> None:
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.workloads.promote import read_history

    config = env.root / "retrain.yaml"
    config.write_text(
        f"train:\n  data: {{source_dir: {Path(__file__).parents[1] / 'fixtures'}}}\n"
        "gate: {max_overall_f1_drop: 0.1, max_class_f1_drop: 0.2, behaviour: []}\n"
        "policy: {trigger: on_alert, min_feedback_rows: 20}\n",
        encoding="utf-8",
    )
    quiet = env.root / "quiet.json"
    quiet.write_text(json.dumps({"alarm": False, "since": "a", "until": "b", "model_version": env.champion}))
    skipped = run_cli("retrain", "--if-needed", "--summary", quiet, "--config", config)
    assert skipped.returncode == 0, skipped.explain()
    assert json.loads(skipped.stdout)["decision"]["run"] is False
    alarm = env.root / "alarm.json"
    alarm.write_text(
        json.dumps(
            {
                "alarm": True,
                "drift_alarm": True,
                "since": "2026-11-26T10:00:00+00:00",
                "until": "2026-11-26T11:00:00+00:00",
                "model_version": env.champion,
            }
        )
    )
    result = run_cli(
        "retrain",
        "--if-needed",
        "--summary",
        alarm,
        "--config",
        config,
        env={"TAGOPS_RETRAIN_SERVICE_URL": env.url, "TAGOPS_RETRAIN_ADMIN_KEY": env.admin_key},
        timeout=600,
    )
    assert result.returncode == 0, result.explain()
    outcome = json.loads(result.stdout)
    counts = outcome["counts"]
    labelled = env.sent - 1 - 10 - 5
    assert counts["feedback"] == labelled + 1 + 1000 + 5
    assert counts["outvoted"] == 1 and counts["known_titles"] == 1  # the admin outranks the labeller
    assert counts["pending_review"] == 1000 and counts["revoked_key"] == 5
    assert counts["train"] + counts["recent"] == labelled - 1  # all but the known title
    reports = outcome["reports"]
    assert reports["challenger_recent"]["f1"] > reports["champion_recent"]["f1"]
    assert outcome["promoted"] is True, outcome["gate"]
    challenger = outcome["challenger_version"]
    assert outcome["reload"]["current"]["version"] == challenger and outcome["reload"]["shadow"] is None
    assert httpx.get(f"{env.url}/v1/model", timeout=30).json()["version"] == challenger
    record = read_history(env.settings.promotion_history)[-1]
    assert record["action"] == "promote" and record["version"] == challenger
    assert record["trigger"].startswith("drift alarm at 2026-11-26T10:00:00+00:00")
    assert record["evidence"]["feedback"]["pending_review"] == 1000
    store = PredictionLog(default_database_url(env.settings))
    assert store.reader.count_predictions() == env.sent
    store.dispose()
    # The attacker's thousand labels did not move the champion's answer for the phrase ...
    answer = httpx.post(f"{env.url}/v1/predict", json={"items": [env.phrase]}, timeout=30).json()
    assert answer["model"]["version"] == challenger
    assert answer["predictions"][0]["tag"] == env.phrase_tag
    # ... and neither they nor the revoked labeller's labels are in the training snapshot.
    (folder,) = (env.settings.home / "retrain").iterdir()
    trained = pd.concat(
        [pd.read_csv(folder / "dataset.csv", dtype=str), pd.read_csv(folder / "recent.csv", dtype=str)]
    )
    titles = {t.strip().lower() for t in trained["title"]}
    assert env.phrase["title"].lower() not in titles
    assert not titles & {t.lower() for t in env.revoked_titles}
