"""Training from the warehouse: a snapshot as the data files every stage after it reads.

``DataConfig.snapshot`` names a snapshot (an id, a unique prefix of one, ``latest``) or asks for a new
one (``build``). :func:`data_stage` resolves it and writes the snapshot's training set and holdout as
``dataset.csv`` and ``holdout.csv`` under ``TAGOPS_HOME/warehouse/exports/<id>/``, beside a copy of its
``lineage.json``; validation, the
split, fitting, evaluation and registration then read them as they read any data files, and the run
records the snapshot id beside the files' sha256 (MLflow tags and parameters, ZenML's data artifact).

The files are rendered from the Parquet tables (each verified against its lineage first) in id order,
so the same snapshot always gives byte-identical files: with the same seed, the same model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tagops.data.ingest import EXPECTED_COLUMNS
from tagops.data.stages import DataSnapshot, pull_stage
from tagops.warehouse.snapshots import LINEAGE_FILE, load_snapshot, resolve_snapshot, warehouse_dir

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import DataConfig, RetrainConfig
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: ``DataConfig.snapshot`` value that builds the warehouse first and trains from what it makes.
BUILD = "build"
DATASET_FILE = "dataset.csv"
HOLDOUT_FILE = "holdout.csv"


def exports_dir(settings: Settings) -> Path:
    """Where snapshots are written out as CSV for training: one folder per snapshot id."""
    return warehouse_dir(settings) / "exports"


def render_csv(frame: pd.DataFrame) -> bytes:
    """A snapshot table as the bytes of a projects CSV file (dataset.csv's columns and time format)."""
    out = frame[list(EXPECTED_COLUMNS)].copy()
    out["created_on"] = out["created_on"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _write_once(path: Path, content: bytes) -> str:
    """Write ``content`` to ``path`` unless it holds exactly that already; its sha256.

    A file that differs (edited by hand, cut short) is replaced: the snapshot's Parquet tables, verified
    against their lineage, are the truth, the CSV file only their rendering. Written to a file of this
    process and renamed into place, so a concurrent run never reads half a file.
    """
    digest = hashlib.sha256(content).hexdigest()
    try:
        if path.read_bytes() == content:
            return digest
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.write_bytes(content)
    staged.replace(path)
    return digest


def export_snapshot(settings: Settings, reference: str) -> DataSnapshot:
    """A snapshot's training set and holdout as data files, with their hashes and the snapshot id.

    Raises:
        TagopsError: no snapshot by that reference (or an ambiguous prefix).
        IntegrityError: a Parquet file of the snapshot is missing or changed.

    """
    source = resolve_snapshot(settings, reference)
    snapshot_id = source.name
    training, holdout, _ = load_snapshot(settings, snapshot_id)
    folder = exports_dir(settings) / snapshot_id
    dataset_sha = _write_once(folder / DATASET_FILE, render_csv(training))
    holdout_sha = _write_once(folder / HOLDOUT_FILE, render_csv(holdout))
    # The lineage travels with the files: registration logs it into the model's MLflow run.
    _write_once(folder / LINEAGE_FILE, (source / LINEAGE_FILE).read_bytes())
    logger.info(
        "data: snapshot %s (%d training rows, %d holdout rows)", snapshot_id, len(training), len(holdout)
    )
    return DataSnapshot(folder / DATASET_FILE, folder / HOLDOUT_FILE, dataset_sha, holdout_sha, snapshot_id)


def data_stage(settings: Settings, data: DataConfig, retrain: RetrainConfig | None = None) -> DataSnapshot:
    """The data a run trains and is judged on: ``data.snapshot``'s tables, else the files as pulled.

    With ``snapshot: build`` the warehouse is built first (from ``data.source_dir`` when set, else from
    the pulled and verified sources; with the trusted feedback of ``retrain``'s prediction log when
    ``data.snapshot_feedback``), and the snapshot it makes is used.
    """
    if data.snapshot is None:
        return pull_stage(settings, data)
    reference = data.snapshot
    if reference == BUILD:
        from tagops.warehouse.build import build_snapshot

        built = build_snapshot(
            settings, feedback=data.snapshot_feedback, source_dir=data.source_dir, retrain=retrain
        )
        reference = built.snapshot_id
    return export_snapshot(settings, reference)
