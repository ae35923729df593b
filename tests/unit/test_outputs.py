"""Output paths are checked before the work: a folder for a file, a file for a folder, nowhere to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagops.errors import DataError
from tagops.outputs import check_new_folder, check_output_file, check_output_folder

pytestmark = pytest.mark.unit

#: A folder in which no file can be made, by root or anyone else.
UNWRITABLE = Path("/proc")


def refusal(check: object, path: Path) -> str:
    with pytest.raises(DataError) as info:
        check(path)  # type: ignore[operator]
    (violation,) = info.value.violations
    assert violation.file == str(path)
    return violation.message


def test_an_output_file_may_be_new_or_replace_a_file(tmp_path: Path) -> None:
    check_output_file(tmp_path / "new" / "deeper" / "report.json")
    assert (tmp_path / "new" / "deeper").is_dir()  # made, as the writer would
    (tmp_path / "old.json").write_text("kept")
    check_output_file(tmp_path / "old.json")
    assert (tmp_path / "old.json").read_text() == "kept"
    assert sorted(p.name for p in (tmp_path / "new" / "deeper").iterdir()) == []  # the probe is gone


def test_an_output_file_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "folder.json").mkdir()
    assert refusal(check_output_file, tmp_path / "folder.json") == "is a folder: give the output file's path"
    (tmp_path / "plain").write_text("")
    assert refusal(check_output_file, tmp_path / "plain" / "report.json").startswith(
        "cannot create its folder ("
    )
    assert refusal(check_output_file, UNWRITABLE / "report.json").startswith("cannot write there (")


def test_an_output_folder_may_be_new_or_existing(tmp_path: Path) -> None:
    check_output_folder(tmp_path / "reports" / "gate")
    assert (tmp_path / "reports" / "gate").is_dir()
    check_output_folder(tmp_path / "reports" / "gate")
    assert list((tmp_path / "reports" / "gate").iterdir()) == []


def test_an_output_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "gate").write_text("")
    assert refusal(check_output_folder, tmp_path / "gate") == "is a file: give a folder for the outputs"
    assert refusal(check_output_folder, UNWRITABLE / "gate").startswith("cannot create it (")


def test_a_folder_filled_whole_must_be_new_or_empty_beside_a_writable_place(tmp_path: Path) -> None:
    check_new_folder(tmp_path / "models" / "champion")
    assert (tmp_path / "models").is_dir() and not (tmp_path / "models" / "champion").exists()
    (tmp_path / "empty").mkdir()
    check_new_folder(tmp_path / "empty")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("")
    for taken in (tmp_path / "taken", tmp_path / "file"):
        assert refusal(check_new_folder, taken) == "exists and is not an empty folder"
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"
    assert refusal(check_new_folder, UNWRITABLE / "model").startswith("cannot write there (")
