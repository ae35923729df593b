"""Get the raw data, verify it, keep it immutable, and read it safely.

``tagops data pull [--mirror DIR]`` downloads the four Made With ML files from their public address, or
copies them from a mirror folder on offline machines, and checks each sha256 against the manifest shipped
in the package before it is stored read-only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tagops.errors import DataError, IntegrityError, Violation

logger = logging.getLogger(__name__)

EXPECTED_COLUMNS: tuple[str, ...] = ("id", "created_on", "title", "description", "tag")


@dataclass(frozen=True)
class ManifestEntry:
    """What a pulled file must be."""

    name: str
    sha256: str
    rows: int


def load_manifest() -> dict[str, ManifestEntry]:
    """The checksums of the data files, shipped inside the package."""
    raw = json.loads(resources.files("tagops.data").joinpath("manifest.json").read_text(encoding="utf-8"))
    return {name: ManifestEntry(name=name, **entry) for name, entry in raw["files"].items()}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(name: str, target: Path, *, mirror: Path | None, base_url: str) -> str:
    """Copy ``name`` from the mirror or download it from ``base_url`` into ``target``; return the source."""
    if mirror is not None:
        source = mirror / name
        if not source.is_file():
            raise IntegrityError(f"{source}: not found in the data mirror")
        shutil.copyfile(source, target)
        return str(source)
    import requests  # lazy: only a pull from the network needs it

    url = f"{base_url.rstrip('/')}/{name}"
    try:
        response = requests.get(url, timeout=60)
        response.raise_for_status()
    except requests.RequestException as error:
        raise IntegrityError(
            f"{url}: download failed ({error}); offline machines set TAGOPS_DATA_MIRROR or pass --mirror"
        ) from error
    target.write_bytes(response.content)
    return url


def pull_data(
    data_dir: Path,
    *,
    mirror: Path | None = None,
    base_url: str,
    files: tuple[str, ...] | None = None,
    manifest: dict[str, ManifestEntry] | None = None,
) -> dict[str, Path]:
    """Fetch and verify the data files into ``data_dir``; already-verified files are kept as they are.

    A file whose checksum does not match is never stored: the download is discarded and an
    :class:`IntegrityError` names the file, the expected and the actual hash.
    """
    manifest = manifest or load_manifest()
    data_dir.mkdir(parents=True, exist_ok=True)
    pulled: dict[str, Path] = {}
    for name in files or tuple(manifest):
        entry = manifest[name]
        destination = data_dir / name
        if destination.is_file() and sha256_file(destination) == entry.sha256:
            logger.info("%s: already present and verified", destination)
            pulled[name] = destination
            continue
        with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
            staged = Path(tmp) / name
            source = _fetch(name, staged, mirror=mirror, base_url=base_url)
            actual = sha256_file(staged)
            if actual != entry.sha256:
                raise IntegrityError(
                    f"{source}: checksum mismatch (expected sha256 {entry.sha256}, got {actual}); "
                    "nothing was stored"
                )
            if destination.exists():
                destination.chmod(0o644)
                destination.unlink()
            staged.replace(destination)
        destination.chmod(0o444)  # raw data is immutable
        logger.info("%s: verified from %s", destination, source)
        pulled[name] = destination
    return pulled


def require_file(path: Path, kind: str) -> None:
    """Refuse a ``path`` that is missing, a folder or not a regular file, in words naming ``kind``.

    Raises:
        DataError: what ``path`` is instead of a file.

    """
    name = str(path)
    if not path.exists():
        raise DataError([Violation(name, "file not found")])
    if path.is_dir():
        raise DataError([Violation(name, f"is a folder, not a {kind}")])
    if not path.is_file():
        raise DataError([Violation(name, f"not a regular file: expected a {kind}")])


def read_utf8(path: Path, kind: str) -> str:
    """A text file's content; a byte-order mark, as some editors write, is dropped.

    Raises:
        DataError: ``path`` is missing, a folder or not a regular file, cannot be read, or is not UTF-8
            text (the message names ``kind`` and the first bad byte).

    """
    name = str(path)
    require_file(path, kind)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError([Violation(name, f"cannot read ({error.strerror or error})")]) from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            [Violation(name, f"not a UTF-8 text {kind} (byte {error.start} is not UTF-8)")]
        ) from error


def read_csv(path: Path) -> Any:
    """Read a CSV of projects as strings, or raise a :class:`DataError` that says why it is not one.

    Everything is read as text (``dtype=str``, no NA guessing) so validation sees exactly what the file
    holds: an empty description stays ``""`` and a malformed id is reported, not silently turned to NaN.
    """
    import pandas as pd

    name = str(path)
    text = read_utf8(path, "CSV file")
    if "\x00" in text:
        raise DataError([Violation(name, "not a CSV file (it contains NUL bytes)")])
    if not text.strip():
        raise DataError([Violation(name, "empty file: expected a CSV header and rows")])
    header = next(csv.reader(io.StringIO(text)), [])
    if len(header) < 2:
        raise DataError(
            [
                Violation(
                    name, f"not a CSV file with a header (first line has {len(header)} field(s))", row=None
                )
            ]
        )
    # pandas would rename a repeated column ("title.1") and every reader would take the first silently.
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(
            [Violation(name, f"column '{c}' appears {header.count(c)} times", column=c) for c in repeated]
        )
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError([Violation(name, f"not valid CSV: {' '.join(str(error).split())}")]) from error
    return frame
