"""Prediction: result fields and threshold, reading CSV/JSONL inputs, writing outputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tagops import LABELS
from tagops.errors import DataError, Violation
from tagops.inference.predictor import Predictor, predict_file, read_items

from .conftest import fit_rules_model

pytestmark = pytest.mark.unit


class FixedModel:
    """A stand-in model whose probabilities are given per text."""

    family = "fixed"
    labels = LABELS

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.seen: list[str] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([self.table[t] for t in texts], dtype=np.float64)


TABLE = {
    "sure thing": [0.05, 0.85, 0.05, 0.05],
    "coin flip": [0.40, 0.45, 0.10, 0.05],
    "Title Description": [0.10, 0.10, 0.70, 0.10],
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_rules_model(tmp_path_factory.mktemp("model") / "rules")


def test_predict_result_fields_without_threshold() -> None:
    predictor = Predictor(FixedModel(TABLE))
    results = predictor.predict(["sure thing", "coin flip"], ["", ""])
    assert [set(r) for r in results] == [{"tag", "confidence", "abstained", "probabilities"}] * 2
    assert [r["tag"] for r in results] == ["mlops", "mlops"]
    assert [r["confidence"] for r in results] == [pytest.approx(0.85), pytest.approx(0.45)]
    assert [r["abstained"] for r in results] == [False, False]
    assert results[1]["probabilities"] == dict(zip(LABELS, TABLE["coin flip"], strict=True))


def test_predict_abstains_below_threshold() -> None:
    predictor = Predictor(FixedModel(TABLE), threshold=0.5)
    sure, unsure = predictor.predict(["sure thing", "coin flip"], ["", ""])
    assert (sure["tag"], sure["abstained"]) == ("mlops", False)
    assert (unsure["tag"], unsure["abstained"]) == ("other", True)
    assert unsure["confidence"] == pytest.approx(0.45)  # the model's confidence, not the abstention's
    assert isinstance(unsure["abstained"], bool)


def test_predict_builds_text_from_title_and_description() -> None:
    model = FixedModel(TABLE)
    (result,) = Predictor(model).predict(["Title"], ["Description"])
    assert model.seen == ["Title Description"]
    assert result["tag"] == "natural-language-processing"


def test_predict_nothing() -> None:
    assert Predictor(FixedModel(TABLE)).predict([], []) == []


def test_from_directory_and_describe(model_dir: Path) -> None:
    predictor = Predictor.from_directory(model_dir, threshold=0.3, metadata={"version": 4})
    described = predictor.describe()
    assert described == {
        "family": "rules",
        "labels": list(LABELS),
        "threshold": 0.3,
        "threshold_source": "override",
        "temperature": None,
        "path": str(model_dir),
        "version": 4,
    }
    (result,) = predictor.predict(["Image segmentation"], ["with a camera"])
    assert result["tag"] == "computer-vision"
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


# -------------------------------------------------------------------------------------------- inputs
def violations(path: Path) -> list[Violation]:
    with pytest.raises(DataError) as info:
        read_items(path)
    for violation in info.value.violations:
        assert violation.file == str(path)
    return info.value.violations


def test_read_csv_items(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    pd.DataFrame({"id": ["1", "2"], "title": ["A", ""], "description": ["x", "only description"]}).to_csv(
        path, index=False
    )
    assert read_items(path) == [
        {"id": "1", "title": "A", "description": "x"},
        {"id": "2", "title": "", "description": "only description"},
    ]


def test_read_csv_without_description(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("title,id\nA,1\n")
    assert read_items(path) == [{"title": "A", "id": "1"}]


def test_csv_without_title_column(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("name,description\nA,x\n")
    (violation,) = violations(path)
    assert violation.column == "title"


def test_csv_row_with_empty_title_and_description(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("title,description\nA,x\n , \nB,y\n")
    (violation,) = violations(path)
    assert (violation.row, violation.column) == (2, "title")
    assert "empty title and description" in violation.message


def test_read_jsonl_items_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"title": "A", "description": "x", "id": 7}\n\n{"title": "B"}\n')
    assert read_items(path) == [{"title": "A", "description": "x", "id": 7}, {"title": "B"}]


def test_jsonl_errors_name_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        '{"title": "fine"}',
        '{"title": "broken",',
        '["not", "an", "object"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    found = violations(path)
    assert [(v.row, v.column) for v in found] == [(2, None), (3, None)]
    assert "invalid JSON" in found[0].message
    assert "JSON object" in found[1].message
    assert all("\n" not in str(v) for v in found)


def test_jsonl_field_errors_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        '{"title": 42}',
        '{"title": "fine", "description": "ok"}',
        '{"description": "no title"}',
        '{"title": "t", "description": ["x"]}',
        '{"title": " ", "description": null}',
    ]
    path.write_text("\n".join(lines) + "\n")
    found = violations(path)
    assert [(v.row, v.column) for v in found] == [
        (1, "title"),
        (3, "title"),
        (4, "description"),
        (5, "title"),
    ]
    assert found[0].message == "field 'title' must be a string, not a number"
    assert found[1].message == "missing field 'title' (fields found: 'description')"
    assert found[2].message == "field 'description' must be a string, not an array"
    assert "empty title and description" in found[3].message
    assert str(found[0]) == f"{path}, row 1, column 'title': field 'title' must be a string, not a number"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"title": null, "description": "x"}', "field 'title' must be a string, not null"),
        ('{"title": true}', "field 'title' must be a string, not a boolean"),
        ('{"title": {"text": "A"}}', "field 'title' must be a string, not an object"),
        (
            '{"titel": "A", "description": "x"}',
            "missing field 'title' (fields found: 'titel', 'description')",
        ),
        ("{}", "missing field 'title' (fields found: none)"),
    ],
)
def test_jsonl_field_error_says_what_was_found(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(line + "\n")
    (violation,) = violations(path)
    assert (violation.row, violation.column, violation.message) == (1, "title", message)


def test_jsonl_that_is_not_utf8_is_named_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes('{"title": "R\u00e9seau"}\n'.encode("latin-1"))
    (violation,) = violations(path)
    assert violation.message == "not a UTF-8 text JSON lines file (byte 12 is not UTF-8)"


def test_jsonl_with_a_byte_order_mark_reads_like_csv(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"title": "A", "description": "x"}\n')
    assert read_items(path) == [{"title": "A", "description": "x"}]


@pytest.mark.parametrize("suffix", [".txt", ".json", ".parquet", ""])
def test_unsupported_extension(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_text('{"title": "A"}\n')
    (violation,) = violations(path)
    assert "unsupported input type" in violation.message


def test_missing_or_empty_input(tmp_path: Path) -> None:
    assert "not found" in violations(tmp_path / "absent.jsonl")[0].message
    folder = tmp_path / "inputs.csv"
    folder.mkdir()
    assert violations(folder)[0].message == "is a folder, not a CSV or JSON lines file"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert "no rows to predict" in violations(empty)[0].message


# ------------------------------------------------------------------------------------------- outputs
@pytest.fixture
def items() -> list[dict[str, object]]:
    return [
        {"id": 1, "title": "Image segmentation", "description": "camera pixels"},
        {"id": 2, "title": "Docker deployment", "description": None},
        {"id": 3, "title": "Sentence translation"},
        {"id": 4, "title": "", "description": "graph agent reward"},
    ]


@pytest.mark.parametrize("output_name", ["out.csv", "out.jsonl"])
@pytest.mark.parametrize("input_name", ["in.csv", "in.jsonl"])
def test_predict_file_writes_one_row_per_input_row(
    tmp_path: Path, model_dir: Path, items: list[dict[str, object]], input_name: str, output_name: str
) -> None:
    source = tmp_path / input_name
    if input_name.endswith(".csv"):
        pd.DataFrame(items).fillna("").to_csv(source, index=False)
    else:
        source.write_text("".join(json.dumps(i) + "\n" for i in items))
    predictor = Predictor.from_directory(model_dir, threshold=0.0)
    output = tmp_path / "sub" / output_name
    assert predict_file(predictor, source, output, batch_size=3) == len(items)
    if output_name.endswith(".csv"):
        rows = pd.read_csv(output, dtype=str, keep_default_na=False).to_dict(orient="records")
        for row in rows:
            assert sum(float(row[f"p_{label}"]) for label in LABELS) == pytest.approx(1.0, abs=1e-5)
    else:
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        for row in rows:
            assert set(row["probabilities"]) == set(LABELS)
    assert [str(r["id"]) for r in rows] == ["1", "2", "3", "4"]
    assert [r["title"] for r in rows] == [i["title"] for i in items]
    expected = predictor.predict(
        [str(i["title"]) for i in items], [str(i.get("description") or "") for i in items]
    )
    assert [r["tag"] for r in rows] == [e["tag"] for e in expected]
    assert [r["tag"] for r in rows] == ["computer-vision", "mlops", "natural-language-processing", "other"]


@pytest.mark.parametrize("name", ["out.parquet", "out.json", "out"])
def test_predict_file_refuses_an_output_type_it_cannot_write(tmp_path: Path, name: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"title": "ok"}\n')
    with pytest.raises(DataError) as info:
        predict_file(Predictor(model=_Unused()), source, tmp_path / name)
    (violation,) = info.value.violations
    assert violation.file == str(tmp_path / name)
    assert "unsupported output type" in violation.message
    assert not (tmp_path / name).exists()


def test_predict_file_refuses_a_folder_or_unwritable_place_before_predicting(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"title": "ok"}\n')
    folder = tmp_path / "out.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="is a folder"):
        predict_file(Predictor(model=_Unused()), source, folder)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot create its folder"):
        predict_file(Predictor(model=_Unused()), source, blocker / "out.csv")
    with pytest.raises(DataError, match="cannot write there"):
        predict_file(Predictor(model=_Unused()), source, Path("/proc/out.csv"))  # no files can be made there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "in.jsonl", "out.csv"]  # no probe left


def test_a_failed_write_leaves_the_earlier_output_whole(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"title": "Image segmentation"}\n')
    output = tmp_path / "out.jsonl"
    output.write_text("earlier predictions\n")

    class FullDisk:
        loads = staticmethod(json.loads)

        @staticmethod
        def dumps(*args: object, **kwargs: object) -> str:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("tagops.inference.predictor.json", FullDisk)
    with pytest.raises(DataError) as info:
        predict_file(Predictor.from_directory(model_dir), source, output)
    assert str(info.value.violations[0]) == f"{output}: cannot write (No space left on device)"
    assert output.read_text() == "earlier predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no partial file left


class _Unused:
    """A model that fails the test if anything is predicted."""

    labels = LABELS

    def predict_proba(self, texts: object) -> None:
        raise AssertionError("predicted although the output was refused")


def test_predict_file_rejects_bad_input_before_writing(tmp_path: Path, model_dir: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"title": "ok"}\n{"title": 1}\n')
    output = tmp_path / "out.jsonl"
    with pytest.raises(DataError):
        predict_file(Predictor.from_directory(model_dir), source, output)
    assert not output.exists()


def test_auto_engine_uses_ray_for_a_network_alone_or_in_an_ensemble_over_a_large_file(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tagops.workloads.batch import AUTO_RAY_ROWS, choose_engine

    def predictor(family: str, *members: str) -> SimpleNamespace:
        model = SimpleNamespace(family=family, members_=[SimpleNamespace(family=m) for m in members])
        return SimpleNamespace(model=model)

    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    big.write_text("title\n" + "x\n" * AUTO_RAY_ROWS)
    small.write_text("title\nx\n")
    assert choose_engine("auto", predictor("transformer"), big) == "ray"
    assert choose_engine("auto", predictor("ensemble", "transformer", "linear"), big) == "ray"
    assert choose_engine("auto", predictor("ensemble", "rules", "linear"), big) == "local"
    assert choose_engine("auto", predictor("linear"), big) == "local"
    assert choose_engine("auto", predictor("ensemble", "transformer", "linear"), small) == "local"
    assert choose_engine("local", predictor("transformer"), big) == "local"
