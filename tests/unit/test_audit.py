"""The label audit: out-of-fold scores, confident learning's suspects, its errors and its command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tagops import LABELS
from tagops.cli import app
from tagops.config import LinearParams
from tagops.data.validate import load_projects
from tagops.errors import DataError
from tagops.workloads.audit import audit_labels, check_auditable, out_of_fold_proba

from .conftest import make_projects, write_csv

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("tagops_home")]

runner = CliRunner()
PARAMS = LinearParams(label_guide=False)
#: Rows of ``make_projects(20)`` (20 per tag, in LABELS order) given another tag: 0-based row -> tag.
PLANTED = {3: "mlops", 25: "other", 45: "computer-vision", 66: "mlops"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 synthetic projects whose words tell their tags apart."""
    return write_csv(tmp_path_factory.mktemp("audit") / "clean.csv", make_projects(20))


@pytest.fixture(scope="module")
def mislabelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The same projects with four rows relabelled against their text, and the true tags."""
    frame = make_projects(20)
    truth = frame.copy()
    for row, tag in PLANTED.items():
        assert frame.loc[row, "tag"] != tag
        frame.loc[row, "tag"] = tag
    return write_csv(tmp_path_factory.mktemp("audit") / "mislabelled.csv", frame), truth


def test_out_of_fold_rows_are_scored_by_models_that_never_saw_them(fixture_dir: Path) -> None:
    frame = load_projects(fixture_dir / "dataset.csv")  # hand-written texts, not separable word lists
    texts = (frame["title"] + " " + frame["description"]).tolist()
    proba = out_of_fold_proba(texts, frame["tag"].tolist(), PARAMS, folds=4, seed=7)
    assert proba.shape == (len(frame), len(LABELS))
    assert proba.sum(axis=1) == pytest.approx(1.0)
    # Columns follow LABELS: the fixture's texts are learnable, so the top column is mostly the row's tag.
    accuracy = (proba.argmax(axis=1) == frame["tag"].map(LABELS.index).to_numpy()).mean()
    assert accuracy >= 0.85


def test_a_row_is_judged_by_models_fitted_without_it(clean: Path) -> None:
    frame = load_projects(clean)
    texts = (frame["title"] + " " + frame["description"]).tolist()
    tags = frame["tag"].tolist()
    row, wrong = 3, "mlops"
    assert tags[row] != wrong
    tags[row] = wrong
    proba = out_of_fold_proba(texts, tags, PARAMS, folds=5, seed=1234)
    # A model that had seen the row would have learnt its tag (C=10 fits the training rows closely).
    assert LABELS[int(proba[row].argmax())] == frame["tag"].iloc[row]
    assert proba[row, LABELS.index(wrong)] < 0.5


def test_the_audit_flags_planted_wrong_tags_and_no_right_one(mislabelled: tuple[Path, pd.DataFrame]) -> None:
    path, truth = mislabelled
    audit = audit_labels(load_projects(path), PARAMS, file=str(path), folds=5, seed=1234)
    flagged = {s.row - 1: s for s in audit.suspects}
    # Confident learning trades recall for precision: every flag is a planted row, and most are found.
    assert set(flagged) <= set(PLANTED), f"clean rows flagged: {set(flagged) - set(PLANTED)}"
    assert len(flagged) >= len(PLANTED) - 1, f"flagged only {sorted(flagged)}"
    for row, suspect in flagged.items():
        assert suspect.confident
        assert suspect.tag == PLANTED[row]
        assert suspect.suggested == truth.loc[row, "tag"]
        assert suspect.id == int(truth.loc[row, "id"])
        assert suspect.p_suggested > suspect.p_given
    ranks = [s.p_given for s in audit.suspects]
    assert ranks == sorted(ranks)  # the least likely given tag first
    assert audit.estimated_noise > 0
    assert sum(n for row in audit.estimated_flips.values() for n in row.values()) >= len(flagged)


def test_disagreements_list_every_planted_row(mislabelled: tuple[Path, pd.DataFrame]) -> None:
    path, truth = mislabelled
    strict = audit_labels(load_projects(path), PARAMS, file=str(path))
    audit = audit_labels(load_projects(path), PARAMS, file=str(path), disagreements=True)
    listed = {s.row - 1: s for s in audit.suspects}
    assert set(PLANTED) <= set(listed)
    assert {s.row for s in audit.suspects if s.confident} == {s.row for s in strict.suspects}
    for row in set(listed) - {s.row - 1 for s in strict.suspects}:
        assert not listed[row].confident
        assert listed[row].p_given < listed[row].p_suggested
    assert {listed[row].suggested for row in PLANTED} <= set(truth["tag"])
    ranks = [s.p_given for s in audit.suspects]
    assert ranks == sorted(ranks)


def test_a_clean_file_has_no_suspects(clean: Path) -> None:
    audit = audit_labels(load_projects(clean), PARAMS, file=str(clean), folds=5)
    assert audit.suspects == []
    assert audit.estimated_noise == 0 and audit.estimated_flips == {}
    assert audit.out_of_fold_f1 == 1.0


def test_too_few_rows_of_a_tag_for_the_folds_is_named() -> None:
    small = make_projects(3)
    small["id"] = small["id"].astype(int)
    with pytest.raises(DataError) as info:
        check_auditable(small, file="small.csv", folds=5)
    messages = [str(v) for v in info.value.violations]
    assert len(messages) == len(LABELS)
    assert "small.csv, column 'tag': tag 'computer-vision' has 3 row(s); 5 folds need at least 5" in messages
    with pytest.raises(DataError, match="at least two tags"):
        check_auditable(small[small["tag"] == "mlops"], file="one.csv", folds=2)
    with pytest.raises(ValueError, match="at least 2 folds"):
        check_auditable(small, file="small.csv", folds=1)


def test_audit_command_writes_the_suspects_for_review(
    mislabelled: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    path, _ = mislabelled
    output = tmp_path / "review" / "suspects.csv"
    result = runner.invoke(app, ["data", "audit", "--data", str(path), "--output", str(output), "--json"])
    assert result.exit_code == 0, result.output
    audit = json.loads(result.stdout)
    assert audit["file"] == str(path) and audit["family"] == "linear" and audit["rows"] == 80
    assert audit["folds"] == 5 and audit["seed"] == 1234
    written = pd.read_csv(output)
    assert written["row"].tolist() == [s["row"] for s in audit["suspects"]]
    assert written["row"].tolist() and set(written["row"] - 1) <= set(PLANTED)
    text = runner.invoke(app, ["data", "audit", "--data", str(path), "--disagreements"])
    assert text.exit_code == 0, text.output
    for row in PLANTED:
        assert f"row {row + 1} (id " in text.stdout
    assert "more where the model disagrees); estimated wrong tags" in text.stdout


def test_audit_command_refuses_a_file_too_small_for_its_folds(fixture_dir: Path) -> None:
    path = fixture_dir / "holdout.csv"
    result = runner.invoke(app, ["data", "audit", "--data", str(path), "--folds", "7"])
    assert isinstance(result.exception, DataError)
    assert f"{path}, column 'tag': tag 'mlops' has 6 row(s); 7 folds need at least 7" in [
        str(v) for v in result.exception.violations
    ]


def test_the_audit_never_forks_a_process_pool(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fork of a process that runs threads (torch's, a server's) can hang in the child.
    import multiprocessing

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the audit started a process pool")

    monkeypatch.setattr(multiprocessing, "Pool", refuse)
    audit = audit_labels(load_projects(clean), PARAMS, file=str(clean), folds=3)
    assert audit.rows == 80
