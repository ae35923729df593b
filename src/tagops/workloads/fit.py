"""Fitting and refitting one model family (or an ensemble of them) on a training frame.

:func:`train_stage`, :func:`refit_model_stage` and :func:`assemble_stage` are the fitting stages of
:func:`tagops.workloads.train.training_plan`; a transformer with ``engine="ray"`` trains on Ray Train
(:mod:`tagops.models.transformer.ray_train`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import AnyModelParams, EnsembleParams, TransformerParams

if TYPE_CHECKING:
    import pandas as pd

    from tagops.models.transformer.ray_worker import Tracking
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


def fit_stage(
    train: pd.DataFrame,
    params: AnyModelParams,
    *,
    seed: int,
    output_dir: Path,
    val: pd.DataFrame | None = None,
    settings: Settings | None = None,
    tracking: Tracking | None = None,
    checkpoint_dir: Path | None = None,
) -> Path:
    """Fit one model family and save it to ``output_dir``; returns the folder.

    ``val`` is used by families that select an epoch and stop early (``transformer``); the others
    ignore it. A ``transformer`` with ``engine="ray"`` trains on Ray Train with its checkpoints in
    ``checkpoint_dir`` (default ``TAGOPS_HOME/ray_results/<output_dir name>``); fitting again with the
    same ``checkpoint_dir`` after an interruption resumes from the last checkpoint.
    """
    from tagops.data.clean import build_text
    from tagops.models import create_model

    if isinstance(params, EnsembleParams):
        return _fit_ensemble(
            train,
            params,
            seed=seed,
            output_dir=output_dir,
            val=val,
            settings=settings,
            tracking=tracking,
            checkpoint_dir=checkpoint_dir,
        )
    texts = [build_text(t, d) for t, d in zip(train["title"], train["description"], strict=True)]
    started = time.perf_counter()
    if isinstance(params, TransformerParams):
        model: Any = _fit_transformer(
            texts,
            train["tag"].tolist(),
            params,
            seed=seed,
            val=val,
            settings=settings,
            checkpoint_dir=checkpoint_dir,
            name=output_dir.name,
            tracking=tracking,
        )
    else:
        model = create_model(params)
        model.fit(texts, train["tag"].tolist(), seed=seed)
    logger.info("fitted %s on %d rows in %.1fs", params.family, len(texts), time.perf_counter() - started)
    model.save(output_dir)
    return output_dir


def _fit_ensemble(
    train: pd.DataFrame,
    params: EnsembleParams,
    *,
    seed: int,
    output_dir: Path,
    val: pd.DataFrame | None,
    settings: Settings | None,
    tracking: Tracking | None,
    checkpoint_dir: Path | None,
) -> Path:
    """Fit each member with :func:`fit_stage` into the ensemble's folder, then describe the ensemble."""
    from dataclasses import replace

    from tagops.models.ensemble import member_dirname, write_descriptor

    for index, member in enumerate(params.members):
        name = member_dirname(index, member.family)
        fit_stage(
            train,
            member,
            seed=seed,
            output_dir=output_dir / name,
            val=val,
            settings=settings,
            tracking=replace(tracking, prefix=f"{tracking.prefix}{member.family}.") if tracking else None,
            checkpoint_dir=(checkpoint_dir / f"{index}-{member.family}") if checkpoint_dir else None,
        )
    write_descriptor(output_dir, params)
    return output_dir


def ray_results_dir(settings: Settings) -> Path:
    """Where Ray Train and Ray Tune keep run state and checkpoints."""
    return settings.home / "ray_results"


def _fit_transformer(
    texts: list[str],
    labels: list[str],
    params: TransformerParams,
    *,
    seed: int,
    val: pd.DataFrame | None,
    settings: Settings | None,
    checkpoint_dir: Path | None,
    name: str,
    tracking: Tracking | None,
) -> Any:
    from tagops.data.clean import build_text

    val_texts = val_labels = None
    if val is not None:
        val_texts = [build_text(t, d) for t, d in zip(val["title"], val["description"], strict=True)]
        val_labels = val["tag"].tolist()
    if params.engine == "local":
        from tagops.models.transformer import TransformerModel

        return TransformerModel(params).fit(
            texts, labels, seed=seed, val_texts=val_texts, val_labels=val_labels
        )
    from tagops.models.transformer.ray_train import fit_transformer

    if settings is None:
        raise ValueError("training on Ray Train needs the settings (where its checkpoints live)")
    checkpoint_dir = checkpoint_dir or ray_results_dir(settings) / name
    return fit_transformer(
        texts,
        labels,
        params=params,
        seed=seed,
        settings=settings,
        storage_dir=checkpoint_dir.parent,
        name=checkpoint_dir.name,
        val_texts=val_texts,
        val_labels=val_labels,
        tracking=tracking,
    )


def uses_ray_train(params: AnyModelParams) -> bool:
    """Whether fitting ``params`` runs Ray Train (and so checkpoints and can resume)."""
    if isinstance(params, EnsembleParams):
        return any(uses_ray_train(m) for m in params.members)
    return isinstance(params, TransformerParams) and params.engine == "ray"


def refit_stage(
    dataset: pd.DataFrame,
    params: AnyModelParams,
    *,
    seed: int,
    val_model_dir: Path,
    output_dir: Path,
    settings: Settings | None = None,
    tracking: Tracking | None = None,
    checkpoint_dir: Path | None = None,
) -> Path:
    """Refit a validated recipe on all of ``dataset``; returns the final model's folder.

    A transformer trains for the epoch count validation picked, or (``refit=False``, its default) keeps
    the validation-trained model itself, which is returned as is. Ensemble members follow their own
    family's rule; a kept member is copied into the ensemble's folder.
    """
    import shutil

    if isinstance(params, EnsembleParams):
        from dataclasses import replace

        from tagops.models.ensemble import member_dirname, write_descriptor

        for index, member in enumerate(params.members):
            name = member_dirname(index, member.family)
            target = output_dir / name
            final = refit_stage(
                dataset,
                member,
                seed=seed,
                val_model_dir=val_model_dir / name,
                output_dir=target,
                settings=settings,
                tracking=replace(tracking, prefix=f"{tracking.prefix}{member.family}.") if tracking else None,
                checkpoint_dir=(checkpoint_dir / f"{index}-{member.family}") if checkpoint_dir else None,
            )
            if final != target:
                shutil.copytree(final, target, dirs_exist_ok=True)
        write_descriptor(output_dir, params)
        return output_dir
    if isinstance(params, TransformerParams) and not params.refit:
        logger.info("transformer: keeping the early-stopped model (refit=False)")
        return val_model_dir
    return fit_stage(
        dataset,
        refit_params(params, val_model_dir),
        seed=seed,
        output_dir=output_dir,
        settings=settings,
        tracking=tracking,
        checkpoint_dir=checkpoint_dir,
    )


def refit_params(params: AnyModelParams, val_model_dir: Path) -> AnyModelParams:
    """The recipe for the refit on all rows: a transformer trains for the epoch validation picked."""
    if isinstance(params, EnsembleParams):
        from tagops.models.ensemble import member_dirname

        members = tuple(
            refit_params(m, val_model_dir / member_dirname(i, m.family)) for i, m in enumerate(params.members)
        )
        return params.model_copy(update={"members": members})
    if not isinstance(params, TransformerParams):
        return params
    from tagops.models.base import read_model_info

    best_epoch = int(read_model_info(val_model_dir).get("training", {}).get("best_epoch") or params.epochs)
    return params.model_copy(update={"epochs": max(1, best_epoch), "patience": None})


# ------------------------------------------------------------------------------------------ stages
def _fresh_dir(settings: Settings, family: str) -> Path:
    return settings.models_dir / "pipeline" / f"{family}-{uuid.uuid4().hex[:12]}"


def _saved(output_dir: Path, reuse: bool, stage: str) -> bool:
    if reuse and (output_dir / "model.json").is_file():
        logger.info("the %s model in %s is already trained; reusing it", stage, output_dir)
        return True
    return False


def train_stage(
    settings: Settings,
    train: pd.DataFrame,
    val: pd.DataFrame,
    model: AnyModelParams,
    seed: int,
    output_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    tracking: Tracking | None = None,
    reuse: bool = False,
) -> Path:
    """Fit one family on the train split (``val`` picks a transformer's epoch); returns the model folder.

    Without ``output_dir`` the model goes to a fresh folder under ``TAGOPS_HOME/models/pipeline``.
    ``reuse`` keeps a model already saved in ``output_dir`` (a resumed run).
    """
    output = output_dir or _fresh_dir(settings, model.family)
    if _saved(output, reuse, "validation"):
        return output
    return fit_stage(
        train,
        model,
        seed=seed,
        output_dir=output,
        val=val,
        settings=settings,
        tracking=tracking,
        checkpoint_dir=checkpoint_dir,
    )


def refit_model_stage(
    settings: Settings,
    dataset: pd.DataFrame,
    model: AnyModelParams,
    seed: int,
    val_model_dir: Path,
    output_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    tracking: Tracking | None = None,
    reuse: bool = False,
) -> Path:
    """Refit the measured recipe on all of dataset.csv (a transformer keeps its early-stopped model)."""
    output = output_dir or _fresh_dir(settings, model.family)
    if _saved(output, reuse, "refit"):
        return output
    return refit_stage(
        dataset,
        model,
        seed=seed,
        val_model_dir=Path(val_model_dir),
        output_dir=output,
        settings=settings,
        tracking=tracking,
        checkpoint_dir=checkpoint_dir,
    )


def assemble_stage(settings: Settings, member_dirs: Sequence[Path], model: EnsembleParams) -> Path:
    """Assemble an ensemble from members this plan already trained (copied, never retrained)."""
    import shutil

    from tagops.models.ensemble import member_dirname, write_descriptor

    output = _fresh_dir(settings, "ensemble")
    for index, (member, source) in enumerate(zip(model.members, member_dirs, strict=True)):
        shutil.copytree(source, output / member_dirname(index, member.family))
    write_descriptor(output, model)
    return output
