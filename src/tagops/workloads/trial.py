"""One trial of a hyper-parameter search: the search space, a trial's parameters, its fit and MLflow run.

:func:`search_space` turns :class:`tagops.config.TuneConfig` into Ray Tune's sampling domains (and the
family's default as a point in them); :func:`run_trial` is the trainable every Ray Tune trial runs: it
fits the family with the sampled parameters, reports validation F1 after every epoch (so ASHA can stop
it early) and logs to an MLflow child run of the search's parent run. The search that runs the trials
is :mod:`tagops.workloads.tune`.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from tagops.config import LinearParams, TransformerParams, TuneConfig

logger = logging.getLogger(__name__)

Family = Literal["transformer", "linear"]
#: What every trial reports and the search ranks by: weighted F1 on the validation split.
METRIC = "val_f1"


# ------------------------------------------------------------------------------------ search space
def _ngram(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def _parse_ngram(value: str) -> list[int]:
    low, high = value.split("-")
    return [int(low), int(high)]


def search_space(cfg: TuneConfig, family: Family) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray Tune's sampling domains for ``family`` and the family's default as a point in that space."""
    from ray import tune

    def floats(r: Any) -> Any:
        return tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)

    if family == "transformer":
        s, base = cfg.transformer_space, cfg.transformer
        space = {
            "lr": floats(s.lr),
            "head_lr": floats(s.head_lr),
            "dropout": floats(s.dropout),
            "weight_decay": floats(s.weight_decay),
            "epochs": tune.randint(s.epochs.low, s.epochs.high + 1),
            "patience": tune.randint(s.patience.low, s.patience.high + 1),
            "max_length": tune.choice(list(s.max_length)),
            "batch_size": tune.choice(list(s.batch_size)),
        }
        if s.trainable_layers:
            space["trainable_layers"] = tune.choice(list(s.trainable_layers))
        default = {k: getattr(base, k) for k in space}
        default["head_lr"] = base.head_lr or base.lr
        default["patience"] = base.patience or s.patience.high
        default["epochs"] = min(max(base.epochs, s.epochs.low), s.epochs.high)
        return space, default
    ls, linear = cfg.linear_space, cfg.linear
    space = {
        "C": floats(ls.C),
        "word_ngram_range": tune.choice([_ngram(r) for r in ls.word_ngram_range]),
        "char_ngram_range": tune.choice([_ngram(r) for r in ls.char_ngram_range]),
    }
    default = {
        "C": linear.C,
        "word_ngram_range": _ngram(linear.word_ngram_range),
        "char_ngram_range": _ngram(linear.char_ngram_range),
    }
    return space, default


def trial_params(
    cfg: TuneConfig, family: Family, sampled: dict[str, Any]
) -> TransformerParams | LinearParams:
    """The family's parameters with a trial's sampled values applied, validated again."""
    if family == "transformer":
        values = {k: v for k, v in sampled.items() if k in TransformerParams.model_fields}
        return TransformerParams.model_validate({**cfg.transformer.model_dump(mode="json"), **values})
    values = dict(sampled)
    for key in ("word_ngram_range", "char_ngram_range"):
        if isinstance(values.get(key), str):
            values[key] = _parse_ngram(values[key])
    values = {k: v for k, v in values.items() if k in LinearParams.model_fields}
    return LinearParams.model_validate({**cfg.linear.model_dump(mode="json"), **values})


# ------------------------------------------------------------------------------------------ a trial
def run_trial(
    config: dict[str, Any],
    *,
    tune_config: dict[str, Any],
    family: Family,
    data: dict[str, list[str]],
    threads: int,
    tracking: dict[str, str] | None,
) -> None:
    """One Ray Tune trial: fit with the sampled parameters, report validation F1 after every epoch."""
    from ray import tune

    cfg = TuneConfig.model_validate(tune_config)
    params = trial_params(cfg, family, config)
    run_id = _open_child_run(tracking, params, config)
    extra = {"mlflow_run_id": run_id or ""}
    if isinstance(params, TransformerParams):
        import torch

        from tagops.models.transformer import TransformerModel

        torch.set_num_threads(threads)

        def report(state: Any) -> None:
            metrics = {k: v for k, v in state.history[-1].items() if k != "epoch"}
            _log_child(tracking, run_id, metrics, state.epoch)
            if state.stopped_early or state.epoch >= params.epochs:
                # The scheduler may end the trial inside this last report: close the run first.
                _close_child(tracking, run_id)
            tune.report({**metrics, "epoch": state.epoch, "best_val_f1": state.best_f1, **extra})

        model = TransformerModel(params.model_copy(update={"engine": "local"}))
        model.num_threads = threads
        model.fit(
            data["train_texts"],
            data["train_labels"],
            seed=cfg.seed,
            val_texts=data["val_texts"],
            val_labels=data["val_labels"],
            on_epoch=report,
        )
    else:
        from sklearn.metrics import f1_score

        from tagops.models.linear import LinearModel

        linear = LinearModel(params).fit(data["train_texts"], data["train_labels"], seed=cfg.seed)
        proba = linear.predict_proba(data["val_texts"])
        predicted = [linear.labels[i] for i in proba.argmax(axis=1)]
        f1 = float(f1_score(data["val_labels"], predicted, average="weighted", zero_division=0))
        _log_child(tracking, run_id, {METRIC: f1}, 1)
        _close_child(tracking, run_id)  # before the report: the trial may be ended inside it
        tune.report({METRIC: f1, "epoch": 1, "best_val_f1": f1, **extra})
    _close_child(tracking, run_id)


def _close_child(tracking: dict[str, str] | None, run_id: str | None) -> None:
    """Mark a trial's MLflow run FINISHED (once; a run already closed is left as it is)."""
    if not tracking or not run_id:
        return
    from tagops.registry.runs import close_run, run_status

    if run_status(tracking["tracking_uri"], run_id) == "RUNNING":
        close_run(tracking["tracking_uri"], run_id)


def _open_child_run(
    tracking: dict[str, str] | None, params: TransformerParams | LinearParams, sampled: dict[str, Any]
) -> str | None:
    if not tracking:
        return None
    from ray import tune

    from tagops.registry.runs import log_to_run, open_run

    trial = tune.get_context().get_trial_name()
    run_id = open_run(
        tracking["tracking_uri"],
        tracking["experiment_id"],
        trial,
        tags={"family": params.family, "tagops.tune": tracking["name"]},
        parent_run_id=tracking["parent_run_id"],
    )
    log_to_run(tracking["tracking_uri"], run_id, params={"sampled": sampled, "config": params.model_dump()})
    return run_id


def _log_child(
    tracking: dict[str, str] | None, run_id: str | None, metrics: dict[str, float], step: int
) -> None:
    if not tracking or not run_id:
        return
    from tagops.registry.runs import log_to_run

    try:
        log_to_run(tracking["tracking_uri"], run_id, metrics=metrics, step=step)
    except Exception as error:  # tracking trouble must not fail a trial
        logger.warning("could not log trial metrics to MLflow: %s", error)


__all__ = ["METRIC", "Family", "run_trial", "search_space", "trial_params"]
