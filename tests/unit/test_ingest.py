"""Pulling data from a mirror: checksums, read-only storage, idempotence."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from tagops.data import ingest
from tagops.data.ingest import ManifestEntry, load_manifest, pull_data, sha256_file
from tagops.errors import DataError, IntegrityError

pytestmark = pytest.mark.unit

NO_NETWORK = "http://127.0.0.1:9/never-used"


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "a.csv").write_text("id,title\n1,alpha\n", encoding="utf-8")
    (folder / "b.csv").write_text("id,title\n2,beta\n3,gamma\n", encoding="utf-8")
    return folder


def manifest_for(folder: Path, *names: str) -> dict[str, ManifestEntry]:
    entries = {}
    for name in names:
        content = (folder / name).read_bytes()
        entries[name] = ManifestEntry(name, hashlib.sha256(content).hexdigest(), content.count(b"\n") - 1)
    return entries


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    content = bytes(range(256)) * 9000  # more than one 1 MiB chunk
    path.write_bytes(content)
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()


def test_pull_copies_verifies_and_stores_read_only(tmp_path: Path, mirror: Path) -> None:
    data_dir = tmp_path / "raw"
    manifest = manifest_for(mirror, "a.csv", "b.csv")
    pulled = pull_data(data_dir, mirror=mirror, base_url=NO_NETWORK, manifest=manifest)
    assert pulled == {"a.csv": data_dir / "a.csv", "b.csv": data_dir / "b.csv"}
    for name, path in pulled.items():
        assert path.read_bytes() == (mirror / name).read_bytes()
        assert mode(path) == 0o444
    assert sorted(p.name for p in data_dir.iterdir()) == ["a.csv", "b.csv"]  # no staging leftovers


def test_pull_only_the_files_asked_for(tmp_path: Path, mirror: Path) -> None:
    data_dir = tmp_path / "raw"
    pulled = pull_data(
        data_dir,
        mirror=mirror,
        base_url=NO_NETWORK,
        manifest=manifest_for(mirror, "a.csv", "b.csv"),
        files=("b.csv",),
    )
    assert list(pulled) == ["b.csv"]
    assert [p.name for p in data_dir.iterdir()] == ["b.csv"]


def test_second_pull_is_a_no_op(tmp_path: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "raw"
    manifest = manifest_for(mirror, "a.csv", "b.csv")
    first = pull_data(data_dir, mirror=mirror, base_url=NO_NETWORK, manifest=manifest)
    before = {name: (path.stat().st_ino, path.stat().st_mtime_ns) for name, path in first.items()}

    def no_fetch(*args: object, **kwargs: object) -> str:
        raise AssertionError("a verified file must not be fetched again")

    monkeypatch.setattr(ingest, "_fetch", no_fetch)
    second = pull_data(data_dir, mirror=mirror, base_url=NO_NETWORK, manifest=manifest)
    assert second == first
    assert {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in second.items()} == before


def test_checksum_mismatch_stores_nothing(tmp_path: Path, mirror: Path) -> None:
    data_dir = tmp_path / "raw"
    manifest = manifest_for(mirror, "a.csv")
    (mirror / "a.csv").write_text("id,title\n1,tampered\n", encoding="utf-8")
    with pytest.raises(IntegrityError) as info:
        pull_data(data_dir, mirror=mirror, base_url=NO_NETWORK, manifest=manifest)
    message = str(info.value)
    assert str(mirror / "a.csv") in message
    assert "checksum mismatch" in message
    assert manifest["a.csv"].sha256 in message
    assert sha256_file(mirror / "a.csv") in message
    assert list(data_dir.iterdir()) == []


def test_corrupted_stored_file_is_replaced(tmp_path: Path, mirror: Path) -> None:
    data_dir = tmp_path / "raw"
    manifest = manifest_for(mirror, "a.csv")
    data_dir.mkdir()
    stale = data_dir / "a.csv"
    stale.write_text("garbage")
    stale.chmod(0o444)
    pulled = pull_data(data_dir, mirror=mirror, base_url=NO_NETWORK, manifest=manifest)
    assert pulled["a.csv"].read_bytes() == (mirror / "a.csv").read_bytes()
    assert mode(pulled["a.csv"]) == 0o444


def test_missing_mirror_file(tmp_path: Path, mirror: Path) -> None:
    data_dir = tmp_path / "raw"
    manifest = {"absent.csv": ManifestEntry("absent.csv", "0" * 64, 1)}
    with pytest.raises(IntegrityError, match=r"absent\.csv: not found in the data mirror"):
        pull_data(data_dir, mirror=mirror, base_url=NO_NETWORK, manifest=manifest)
    assert list(data_dir.iterdir()) == []


def test_shipped_manifest_lists_the_four_files() -> None:
    manifest = load_manifest()
    assert set(manifest) == {"dataset.csv", "holdout.csv", "projects.csv", "tags.csv"}
    for name, entry in manifest.items():
        assert entry.name == name
        assert len(entry.sha256) == 64
        int(entry.sha256, 16)
        assert entry.rows > 0


def test_a_path_that_is_no_readable_file_says_what_it_is(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "folder.csv").mkdir()
    expected = {
        "absent.csv": "file not found",
        "folder.csv": "is a folder, not a CSV file",
        "pipe.csv": "not a regular file: expected a CSV file",
    }
    for name, message in expected.items():
        with pytest.raises(DataError) as error:
            ingest.read_csv(tmp_path / name)
        assert error.value.violations[0].message == message


def test_a_file_that_cannot_be_read_is_a_data_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.csv"
    path.write_text("id,title\n1,a\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(DataError) as error:
        ingest.read_utf8(path, "CSV file")
    assert str(error.value.violations[0]) == f"{path}: cannot read (Permission denied)"


def test_a_column_named_twice_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("title,description,title,tag,tag,tag\na,b,c,d,e,f\n")
    with pytest.raises(DataError) as error:
        ingest.read_csv(path)
    assert [str(v) for v in error.value.violations] == [
        f"{path}, column 'tag': column 'tag' appears 3 times",
        f"{path}, column 'title': column 'title' appears 2 times",
    ]
