"""Bad inputs are refused: a non-zero exit, one line naming file, row and column, and nothing registered.

Each case corrupts a temporary copy of the synthetic fixtures and points `tagops train --config` at it with
``data: {source_dir: ...}``, so no real data is needed (except to make the checksum case more realistic).
`tagops data validate` must report the same problem. The `tagops` calls share one pre-created MLflow store;
afterwards the store must hold no model and no run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import MIRROR
from tests.integration.helpers import (
    COLUMNS,
    CliResult,
    isolated_home,
    read_rows,
    registry_counts,
    run_cli,
    write_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# ------------------------------------------------------------------------------------ corruptions
def _binary(folder: Path) -> None:
    (folder / "dataset.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)


def _missing_column(folder: Path) -> None:
    path = folder / "dataset.csv"
    write_rows(path, read_rows(path), columns=tuple(c for c in COLUMNS if c != "description"))


def _edit(row: int, **values: str) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        path = folder / "dataset.csv"
        rows = read_rows(path)
        rows[row - 1].update(values)
        write_rows(path, rows)

    return corrupt


def _duplicate_id(row: int, of_row: int) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        path = folder / "dataset.csv"
        rows = read_rows(path)
        rows[row - 1]["id"] = rows[of_row - 1]["id"]
        write_rows(path, rows)

    return corrupt


def _from_holdout(row: int, holdout_row: int, fields: tuple[str, ...]) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        path = folder / "dataset.csv"
        rows = read_rows(path)
        source = read_rows(folder / "holdout.csv")[holdout_row - 1]
        rows[row - 1].update({f: source[f] for f in fields})
        write_rows(path, rows)

    return corrupt


@dataclass(frozen=True)
class Case:
    """One corruption of dataset.csv and the single error line it must produce."""

    name: str
    corrupt: Callable[[Path], None]
    row: int | None
    column: str | None
    message: tuple[str, ...]  # fragments the error line must contain
    against_holdout: bool = False  # a leakage check: `data validate` needs --against


CASES = [
    Case("binary", _binary, None, None, ("not a UTF-8 text CSV file",)),
    Case("missing-column", _missing_column, None, "description", ("missing column 'description'",)),
    Case("unknown-label", _edit(5, tag="robotics"), 5, "tag", ("tag is not one of the labels", "'robotics'")),
    Case("empty-text", _edit(7, title="", description=""), 7, "title", ("title is empty",)),
    Case("whitespace-text", _edit(8, title="   ", description=" \n "), 8, "title", ("title is empty",)),
    Case("duplicate-id", _duplicate_id(9, of_row=3), 9, "id", ("duplicate id",)),
    Case(
        "leak-id",
        _from_holdout(11, 2, ("id",)),
        11,
        "id",
        ("also in", "holdout.csv row 2 (leakage)"),
        against_holdout=True,
    ),
    Case(
        "leak-text",
        _from_holdout(13, 4, ("title", "description")),
        13,
        "title, description",
        ("same title and description as", "holdout.csv row 4 (leakage)"),
        against_holdout=True,
    ),
]


@dataclass
class Outcome:
    case: Case
    dataset: Path
    train: CliResult
    validate: CliResult


@dataclass
class Results:
    settings: Any
    outcomes: dict[str, Outcome]
    counts: dict[str, int]


def _prepare(case: Case, root: Path, fixture_dir: Path) -> tuple[Path, Path]:
    folder = root / case.name
    folder.mkdir()
    for name in ("dataset.csv", "holdout.csv"):
        shutil.copyfile(fixture_dir / name, folder / name)
    case.corrupt(folder)
    config = folder / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"source_dir": str(folder)},
                "model": {"family": "rules"},
                "evaluation": {"bootstrap_samples": 0},
            }
        )
    )
    return folder / "dataset.csv", config


def _run_case(case: Case, dataset: Path, config: Path) -> Outcome:
    validate_args: list[str | Path] = ["data", "validate", dataset]
    if case.against_holdout:
        validate_args += ["--against", dataset.with_name("holdout.csv")]
    return Outcome(case, dataset, run_cli("train", "--config", config), run_cli(*validate_args))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Results]:
    root = tmp_path_factory.mktemp("bad-inputs")
    prepared = {case.name: (case, *_prepare(case, root, fixture_dir)) for case in CASES}
    with isolated_home(root / "home") as settings:
        from tagops.registry.client import Registry

        Registry(settings)  # the MLflow store exists before the first `tagops` call
        assert registry_counts(settings) == {"registered_models": 0, "model_versions": 0, "runs": 0}
        outcomes = {name: _run_case(*args) for name, args in prepared.items()}
        yield Results(settings, outcomes, registry_counts(settings))


def _assert_one_clean_error(result: CliResult, case: Case, path: Path) -> None:
    assert result.returncode == 1, result.explain()
    assert "Traceback" not in result.stderr, result.explain()
    assert len(result.error_lines) == 1, result.explain()
    where = [str(path)]
    if case.row is not None:
        where.append(f"row {case.row}")
    if case.column is not None:
        where.append(f"column '{case.column}'")
    line = result.error_lines[0]
    assert line.startswith(f"error: {', '.join(where)}: "), result.explain()
    for fragment in case.message:
        assert fragment in line, result.explain()
    assert "\n" not in line


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_train_refuses_bad_data_with_one_line(results: Results, case: Case) -> None:
    outcome = results.outcomes[case.name]
    _assert_one_clean_error(outcome.train, case, outcome.dataset)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_data_validate_reports_the_same_problem(results: Results, case: Case) -> None:
    outcome = results.outcomes[case.name]
    _assert_one_clean_error(outcome.validate, case, outcome.dataset)
    assert outcome.validate.stdout == ""


def test_nothing_was_registered_or_logged(results: Results) -> None:
    assert results.counts == {"registered_models": 0, "model_versions": 0, "runs": 0}
    assert not any(results.settings.models_dir.rglob("model.json")), "a model was fitted on bad data"


# ---------------------------------------------------------------------------------------- checksum
@pytest.fixture
def tampered_mirror(tmp_path: Path, fixture_dir: Path) -> Path:
    """A mirror folder whose dataset.csv does not match the manifest (one byte changed in a real copy)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    if (MIRROR / "dataset.csv").is_file():
        for name in ("dataset.csv", "holdout.csv", "projects.csv", "tags.csv"):
            shutil.copyfile(MIRROR / name, mirror / name)
        data = bytearray((mirror / "dataset.csv").read_bytes())
        position = data.index(b"computer-vision")
        data[position] = ord("C")
        (mirror / "dataset.csv").write_bytes(bytes(data))
    else:  # no real data here: any other content is just as much a mismatch
        for name in ("dataset.csv", "holdout.csv"):
            shutil.copyfile(fixture_dir / name, mirror / name)
    return mirror


def test_checksum_mismatch_on_pull_stores_and_registers_nothing(
    tmp_path: Path, tampered_mirror: Path
) -> None:
    from tagops.data.ingest import load_manifest, sha256_file

    expected_line = (
        f"error: {tampered_mirror / 'dataset.csv'}: checksum mismatch (expected sha256 "
        f"{load_manifest()['dataset.csv'].sha256}, got {sha256_file(tampered_mirror / 'dataset.csv')}); "
        "nothing was stored"
    )
    with isolated_home(tmp_path / "home") as settings, ThreadPoolExecutor(max_workers=2) as pool:
        # Two interpreters at once, as two terminals would run them.
        pulled = pool.submit(run_cli, "data", "pull", "--mirror", tampered_mirror, fresh_process=True)
        # `tagops train` pulls through TAGOPS_DATA_MIRROR; run in its own home so the two cannot interfere.
        train_home = tmp_path / "train-home"
        trained = pool.submit(
            run_cli,
            "train",
            "--model",
            "rules",
            env={
                "TAGOPS_HOME": str(train_home),
                "ZENML_CONFIG_PATH": str(train_home / "zenml"),
                "TAGOPS_DATA_MIRROR": str(tampered_mirror),
            },
            fresh_process=True,
        )
        for result in (pulled.result(), trained.result()):
            assert result.returncode == 1, result.explain()
            assert "Traceback" not in result.stderr, result.explain()
            assert result.error_lines == [expected_line], result.explain()
        assert not (settings.data_dir / "dataset.csv").exists()
        assert not (train_home / "data" / "raw" / "dataset.csv").exists()
        assert list((train_home / "data" / "raw").iterdir()) == [], "a staging file was left behind"
        train_settings = type(settings)(home=train_home)
        assert registry_counts(train_settings) == {"registered_models": 0, "model_versions": 0, "runs": 0}
