"""Where a command writes: checked before the work starts, so that a wrong path costs nothing.

A report, a prediction file or a folder of results is often the last thing a long command does; a path
that is a folder where a file is meant, or lies where nothing can be written, would otherwise surface as
a traceback after every row was predicted or every model scored. These checks make the folder when it
is missing and create (and remove) a file where the output will go: a real write, not a guess from
permission bits, which say nothing to root or on read-only mounts.
"""

from __future__ import annotations

import os
from pathlib import Path

from tagops.errors import DataError, Violation


def staged_path(path: Path) -> Path:
    """Where an output is written before it is renamed into place: beside it, hidden, one per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def _probe(folder: Path, name: str, target: Path) -> None:
    """Make ``folder`` when missing and create and remove a file in it, or raise naming ``target``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        what = "it" if folder == target else "its folder"
        raise DataError(
            [Violation(str(target), f"cannot create {what} ({error.strerror or error})")]
        ) from error
    probe = staged_path(folder / name)
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise DataError(
            [Violation(str(target), f"cannot write there ({error.strerror or error})")]
        ) from error


def check_output_file(path: Path) -> None:
    """Refuse a file path that cannot take a command's output: a folder, or a place no file can be made.

    Raises:
        DataError: naming the path and what is wrong with it.

    """
    if path.is_dir():
        raise DataError([Violation(str(path), "is a folder: give the output file's path")])
    _probe(path.parent, path.name, path)


def check_output_folder(path: Path) -> None:
    """Refuse a folder path that cannot take a command's outputs: an existing file, or unwritable.

    Raises:
        DataError: naming the path and what is wrong with it.

    """
    if path.exists() and not path.is_dir():
        raise DataError([Violation(str(path), "is a file: give a folder for the outputs")])
    _probe(path, "output", path)


def check_new_folder(path: Path) -> None:
    """Refuse a folder a command fills whole and renames into place: it must be new or empty.

    A folder must also be possible beside it, where it is staged.

    Raises:
        DataError: naming the path and what is wrong with it.

    """
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise DataError([Violation(str(path), "exists and is not an empty folder")])
    _probe(path.parent, path.name, path)
