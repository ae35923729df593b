"""The registry workflow a user drives from the command line, on the real data mirror.

train rules → promote → train linear → promote → predict / evaluate / load from MLflow → rollback.
One isolated TAGOPS_HOME for the module; every `tagops` call goes through the console entry point.
The tests run in file order: the rollback tests come last because they move the champion.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tagops import LABELS
from tests.integration.helpers import CliResult, isolated_home, read_rows, run_cli, write_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Flow:
    settings: Any
    root: Path
    rules: dict[str, Any]
    linear: dict[str, Any]
    promote_rules: CliResult
    promote_linear: CliResult

    def registry(self) -> Any:
        from tagops.registry.client import Registry

        return Registry(self.settings)


def _ok(result: CliResult) -> CliResult:
    assert result.returncode == 0, result.explain()
    return result


def _train(family: str) -> dict[str, Any]:
    result = _ok(run_cli("train", "--model", family))
    printed: dict[str, Any] = json.loads(result.stdout)
    assert printed["family"] == family, result.explain()
    return printed


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory, mirror_dir: Path) -> Iterator[Flow]:
    root = tmp_path_factory.mktemp("registry-flow")
    with isolated_home(root / "home", mirror=mirror_dir) as settings:
        rules = _train("rules")
        promote_rules = _ok(run_cli("promote"))
        linear = _train("linear")
        promote_linear = _ok(run_cli("promote"))
        yield Flow(settings, root, rules, linear, promote_rules, promote_linear)


def test_train_prints_a_registered_challenger(flow: Flow) -> None:
    for printed in (flow.rules, flow.linear):
        assert isinstance(printed["version"], int)
        assert printed["run_id"]
        assert 0.0 < printed["val_f1"] <= 1.0
        assert 0.0 < printed["holdout_f1"] <= 1.0
        assert Path(printed["model_dir"], "model.json").is_file()
    assert flow.linear["version"] != flow.rules["version"]
    registry = flow.registry()
    assert registry.alias_version("challenger") == flow.linear["version"]
    # Serving reads an alias from MLflow's SQLite store directly (no MLflow import): the same answer.
    from tagops.registry.aliases import alias_version

    assert alias_version(flow.settings.tracking_uri, "tagops", "challenger") == flow.linear["version"]
    assert alias_version(flow.settings.tracking_uri, "tagops", "no-such-alias") is None
    assert [v["version"] for v in registry.list_versions()] == [flow.linear["version"], flow.rules["version"]]


def test_promotion_follows_the_behavioural_cases_then_holdout_f1(flow: Flow) -> None:
    from tagops.workloads.behaviour import behaviour_tag

    assert flow.promote_rules.stdout.strip() == "promoted: no champion yet"
    registry = flow.registry()
    champion = registry.alias_version("champion")
    history = [json.loads(line) for line in flow.settings.promotion_history.read_text().splitlines()]
    assert [r["version"] for r in history] == [flow.rules["version"], flow.linear["version"]]
    assert history[1]["previous_champion"] == flow.rules["version"]
    assert history[0]["behaviour"]["passed"] is True
    behaviour = history[1]["behaviour"]
    tags = registry.version_info(flow.linear["version"])["tags"]
    assert tags["gate.behaviour"] == behaviour_tag(behaviour)
    if not behaviour["passed"]:
        assert flow.promote_linear.stdout.startswith("not promoted: behaviour: "), (
            flow.promote_linear.explain()
        )
        assert f"case '{behaviour['failed'][0]['name']}'" in flow.promote_linear.stdout
        assert champion == flow.rules["version"]
    elif flow.linear["holdout_f1"] > flow.rules["holdout_f1"]:
        assert flow.promote_linear.stdout.startswith("promoted: "), flow.promote_linear.explain()
        assert champion == flow.linear["version"]
    else:
        assert flow.promote_linear.stdout.startswith("not promoted: "), flow.promote_linear.explain()
        assert champion == flow.rules["version"]


def test_predict_one_item_prints_json_with_a_tag(flow: Flow) -> None:
    result = _ok(
        run_cli(
            "predict",
            "--title",
            "Transformers applied to NLP",
            "--description",
            "Fine-tuning BERT for sentiment classification of product reviews.",
        )
    )
    printed = json.loads(result.stdout)
    assert printed["tag"] == "natural-language-processing"
    assert set(printed["probabilities"]) == set(LABELS)
    assert printed["confidence"] == pytest.approx(max(printed["probabilities"].values()), abs=1e-6)
    assert printed["model"]["version"] == flow.registry().alias_version("champion")
    assert printed["model"]["uri"] == "models:/tagops@champion"


ITEMS = [
    {"id": "1", "title": "YOLO object detection", "description": "Detect cars in dashcam video frames."},
    {
        "id": "2",
        "title": "Serving models with Docker",
        "description": "Deploy and monitor models in production.",
    },
    {
        "id": "3",
        "title": "Question answering",
        "description": "A transformer that answers questions on text.",
    },
]


def test_predict_file_csv_to_jsonl_and_jsonl_to_csv(flow: Flow) -> None:
    source = flow.root / "items.csv"
    write_rows(source, ITEMS, columns=("id", "title", "description"))
    jsonl = flow.root / "out" / "predictions.jsonl"
    result = _ok(run_cli("predict", "--input", source, "--output", jsonl))
    assert result.stdout.strip() == f"{jsonl}: 3 predictions"
    predicted = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [p["id"] for p in predicted] == ["1", "2", "3"]
    assert [p["title"] for p in predicted] == [i["title"] for i in ITEMS]
    assert all(p["tag"] in LABELS and set(p["probabilities"]) == set(LABELS) for p in predicted)
    assert predicted[0]["tag"] == "computer-vision"

    back = flow.root / "out" / "predictions.csv"
    _ok(run_cli("predict", "--input", jsonl, "--output", back))
    rows = read_rows(back)
    assert len(rows) == 3
    assert {"tag", "confidence", *(f"p_{label}" for label in LABELS)} <= set(rows[0])
    assert [r["title"] for r in rows] == [i["title"] for i in ITEMS]
    # Same model, same texts: the CSV agrees with the JSON lines it was made from.
    assert [r["tag"] for r in rows] == [p["tag"] for p in predicted]


def test_evaluate_writes_the_report_and_three_plots(flow: Flow) -> None:
    output = flow.root / "reports" / "champion.json"
    result = _ok(run_cli("evaluate", "--output", output))
    assert result.stdout.startswith(f"{output}: as served (threshold ")
    report = json.loads(output.read_text())
    assert {"overall", "per_class", "slices", "calibration", "confusion_matrix"} <= set(report)
    assert report["overall"]["num_samples"] == 191
    assert set(report["per_class"]) == set(LABELS)
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 191
    champion = flow.registry().alias_version("champion")
    champion_f1 = next(t["holdout_f1"] for t in (flow.rules, flow.linear) if t["version"] == champion)
    assert report["overall"]["f1"] == pytest.approx(champion_f1, abs=1e-9)
    pngs = sorted(p.name for p in output.parent.glob("*.png"))
    assert pngs == ["champion_confusion_matrix.png", "champion_per_class.png", "champion_reliability.png"]
    for png in output.parent.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_champion_loads_as_an_mlflow_pyfunc(flow: Flow) -> None:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(flow.settings.tracking_uri)
    mlflow.set_registry_uri(flow.settings.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/tagops@champion")
    frame = pd.DataFrame(
        {
            "title": ["Real-time object detection", "Text summarization with transformers"],
            "description": ["Detect pedestrians in video frames with YOLO.", ""],
        }
    )
    predicted = model.predict(frame)
    assert list(predicted["tag"]) == ["computer-vision", "natural-language-processing"]
    assert {"confidence", *(f"p_{label}" for label in LABELS)} <= set(predicted.columns)
    assert predicted["confidence"].between(0.0, 1.0).all()


def test_downloads_are_verified_against_the_registered_sha256(flow: Flow) -> None:
    import shutil

    from tagops.errors import RegistryError
    from tagops.registry.client import MODEL_SHA_TAG, model_sha256

    registry = flow.registry()
    version = flow.rules["version"]
    registered = registry.version_info(version)["tags"][MODEL_SHA_TAG]
    folder = registry.download(version)
    assert model_sha256(folder) == registered
    cached = folder / "model.json"
    cached.write_text(cached.read_text().replace("{", "{ ", 1))  # a corrupted cache entry
    assert registry.download(version) == folder and model_sha256(folder) == registered  # fetched again
    assert not list(folder.parents[1].glob(".*.partial"))  # no staging folder left behind
    registry.set_version_tags(version, {MODEL_SHA_TAG: "0" * 64})  # the artifact is not what was registered
    try:
        shutil.rmtree(folder.parent)
        with pytest.raises(RegistryError, match="is not the registered"):
            registry.download(version)
        assert not folder.exists()
    finally:
        registry.set_version_tags(version, {MODEL_SHA_TAG: registered})
    assert model_sha256(registry.download(version)) == registered


def test_rollback_restores_the_previous_champion(flow: Flow) -> None:
    registry = flow.registry()
    before = registry.alias_version("champion")
    if before != flow.linear["version"]:
        pytest.skip("linear was not promoted, so there is nothing to roll back to")
    result = _ok(run_cli("rollback"))
    assert result.stdout.strip() == f"champion: version {before} -> version {flow.rules['version']}"
    assert registry.alias_version("champion") == flow.rules["version"]
    assert registry.version_info(before)["tags"]["rolled_back"] == "true"
    last = json.loads(flow.settings.promotion_history.read_text().splitlines()[-1])
    assert (last["action"], last["previous_champion"], last["champion"]) == (
        "rollback",
        before,
        flow.rules["version"],
    )


def test_second_rollback_fails_cleanly(flow: Flow) -> None:
    registry = flow.registry()
    champion = registry.alias_version("champion")
    assert champion == flow.rules["version"]  # the first champion: it replaced nobody
    result = run_cli("rollback")
    assert result.returncode == 1, result.explain()
    assert "Traceback" not in result.stderr, result.explain()
    assert result.error_lines == [
        f"error: champion version {champion} has no previous champion in {flow.settings.promotion_history}"
    ], result.explain()
    assert registry.alias_version("champion") == champion
