"""The data stages every workload starts with: pull and verify the files, validate them, split them.

Each stage is a plain function; :mod:`tagops.workloads` lists them in order and the ZenML pipelines in
:mod:`tagops.pipelines` wrap the same functions as steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import DataConfig
    from tagops.settings import Settings


@dataclass(frozen=True)
class DataSnapshot:
    """The verified data files a run used, by content hash.

    ``snapshot_id`` names the warehouse snapshot the files were exported from (``tagops data
    snapshots``); ``None`` when they were read as pulled or as a folder holds them.
    """

    dataset_path: Path
    holdout_path: Path
    dataset_sha256: str
    holdout_sha256: str
    snapshot_id: str | None = None

    def to_json(self) -> dict[str, str]:
        """The snapshot as JSON (paths as strings; ``snapshot_id`` only when there is one)."""
        data = {
            "dataset_path": str(self.dataset_path),
            "holdout_path": str(self.holdout_path),
            "dataset_sha256": self.dataset_sha256,
            "holdout_sha256": self.holdout_sha256,
        }
        if self.snapshot_id is not None:
            data["snapshot_id"] = self.snapshot_id
        return data

    @classmethod
    def from_json(cls, data: dict[str, str]) -> DataSnapshot:
        """The snapshot :meth:`to_json` wrote."""
        return cls(
            Path(data["dataset_path"]),
            Path(data["holdout_path"]),
            data["dataset_sha256"],
            data["holdout_sha256"],
            data.get("snapshot_id"),
        )


def pull_stage(settings: Settings, data: DataConfig) -> DataSnapshot:
    """Make sure the verified data files are present (pulling them if needed) and hash them."""
    from tagops.data.ingest import load_manifest, pull_data

    if data.source_dir is not None:
        return snapshot(data.source_dir / data.dataset_file, data.source_dir / data.holdout_file)
    manifest = load_manifest()
    names = (data.dataset_file, data.holdout_file)
    known = [n for n in names if n in manifest]
    paths = {n: settings.data_dir / n for n in names}
    if known:
        paths.update(
            pull_data(
                settings.data_dir,
                mirror=settings.data_mirror,
                base_url=settings.data_url,
                files=tuple(known),
                manifest=manifest,
            )
        )
    return snapshot(paths[data.dataset_file], paths[data.holdout_file])


def snapshot(dataset_path: Path, holdout_path: Path) -> DataSnapshot:
    """Hash two data files (files not in the manifest, e.g. fixtures, are hashed too)."""
    from tagops.data.ingest import sha256_file

    return DataSnapshot(dataset_path, holdout_path, sha256_file(dataset_path), sha256_file(holdout_path))


def validate_stage(data: DataSnapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate both files against the contract and refuse any leakage between them."""
    from tagops.data.validate import check_no_leakage, load_projects

    dataset = load_projects(data.dataset_path)
    holdout = load_projects(data.holdout_path)
    check_no_leakage(dataset, holdout, file=str(data.dataset_path), other_file=str(data.holdout_path))
    return dataset, holdout


def split_stage(dataset: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded, stratified train/validation split."""
    from tagops.data.split import stratify_split

    return stratify_split(dataset, val_size=data.val_size, seed=data.seed)
