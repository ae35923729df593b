"""Pure pieces of transformer training: loss, schedule, early stopping, worker planning, refit recipe."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from tagops.config import LinearParams, TransformerParams
from tagops.models.transformer.network import array_batches
from tagops.models.transformer.ray_train import plan_workers
from tagops.models.transformer.training import (
    TrainState,
    build_loss,
    build_optimizer,
    epoch_seed,
    epoch_summary,
    run_epochs,
    score_epoch,
    steps_per_epoch,
    update_state,
)
from tagops.workloads.fit import refit_params

pytestmark = pytest.mark.unit


def test_loss_is_single_label_cross_entropy_with_balanced_weights_and_smoothing() -> None:
    import torch

    loss = build_loss(TransformerParams(label_smoothing=0.1), [0, 0, 0, 1], num_labels=4)
    assert isinstance(loss, torch.nn.CrossEntropyLoss)
    assert loss.label_smoothing == pytest.approx(0.1)
    # balanced: n / (classes present * count); absent classes weigh nothing
    assert loss.weight.tolist() == pytest.approx([4 / 6, 2.0, 0.0, 0.0])
    unweighted = build_loss(TransformerParams(class_weights=False), [0, 1], num_labels=4)
    assert unweighted.weight is None


def test_schedule_warms_up_then_decays_to_zero() -> None:
    import torch

    module = torch.nn.Linear(4, 2)
    params = TransformerParams(lr=1e-3, head_lr=None, warmup_ratio=0.2)
    optimizer, scheduler = build_optimizer(module, params, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] < rates[1] < rates[2]  # warm-up over the first 2 steps
    assert max(rates) == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[2:]))  # then linear decay
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_biases_get_no_weight_decay_and_the_head_its_own_rate() -> None:
    import torch

    module = torch.nn.Module()
    module.body = torch.nn.Linear(3, 3)
    module.head = torch.nn.Linear(3, 2)
    params = TransformerParams(lr=1e-4, head_lr=1e-2, weight_decay=0.05)
    optimizer, _ = build_optimizer(module, params, total_steps=4)
    groups = [
        (g["lr"], g["weight_decay"], tuple(p.ndim for p in g["params"])) for g in optimizer.param_groups
    ]
    assert sorted(groups) == sorted(
        [(1e-4, 0.05, (2,)), (1e-4, 0.0, (1,)), (1e-2, 0.05, (2,)), (1e-2, 0.0, (1,))]
    )


def test_early_stopping_bookkeeping() -> None:
    state = TrainState()
    assert update_state(state, {"val_f1": 0.5}, patience=2)
    assert not update_state(state, {"val_f1": 0.5}, patience=2)  # a tie is not an improvement...
    assert update_state(state, {"val_f1": 0.5, "val_loss": -1.0}, patience=2)  # ...unless the loss is lower
    assert not state.stopped_early
    assert update_state(state, {"val_f1": 0.6}, patience=2)
    assert not update_state(state, {"val_f1": 0.4}, patience=2)
    assert not update_state(state, {"val_f1": 0.55, "epoch_seconds": 3.0}, patience=2)
    assert state.stopped_early
    assert (state.best_epoch, state.best_f1, state.epoch) == (4, 0.6, 6)
    assert "epoch_seconds" not in state.history[-1]  # timings would make model.json irreproducible
    assert TrainState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_without_validation_the_last_epoch_is_kept() -> None:
    state = TrainState()
    for _ in range(3):
        assert update_state(state, {"train_loss": 1.0}, patience=1)
    assert (state.best_epoch, state.stopped_early) == (3, False)


def test_epoch_scores_from_logits() -> None:
    logits = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0], [5.0, 0, 0, 0]])
    scores = score_epoch(logits, np.array([0, 1, 2, 3]), num_labels=4)
    assert scores["val_accuracy"] == pytest.approx(0.75)
    assert 0 < scores["val_f1"] < 1
    assert scores["val_loss"] > 0


def test_epoch_seeds_differ_by_epoch_and_rank_and_replay() -> None:
    seeds = {epoch_seed(1, e, r) for e in range(5) for r in range(3)}
    assert len(seeds) == 15
    assert epoch_seed(1, 2, 0) == epoch_seed(1, 2, 0)
    assert steps_per_epoch(17, 8) == 3


def head_only() -> object:
    """A classifier over cached embeddings (what a frozen encoder trains), as the epoch loop calls it."""
    import torch

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3, 4)

        def forward(self, pooled: torch.Tensor) -> torch.Tensor:
            return self.head(pooled)  # type: ignore[no-any-return]

    torch.manual_seed(0)
    return Head()


def test_the_epoch_loop_validates_stops_early_and_reports_each_epoch() -> None:
    import torch

    rng = np.random.default_rng(0)
    arrays = {"pooled": rng.normal(size=(16, 3)).astype(np.float32), "label": rng.integers(0, 4, 16)}
    params = TransformerParams(epochs=6, patience=2, lr=1e-2, head_lr=None, warmup_ratio=0.0)
    module = head_only()
    optimizer, scheduler = build_optimizer(module, params, total_steps=12)
    scores = iter([0.5, 0.6, 0.6, 0.55, 0.9])
    asked: list[int] = []
    seen: list[tuple[int, bool, list[str]]] = []

    def batches(epoch: int) -> object:
        asked.append(epoch)
        return array_batches(arrays, 8)

    state = run_epochs(
        module,
        batches,  # type: ignore[arg-type]
        validate=lambda: {"val_f1": next(scores)},
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=torch.nn.CrossEntropyLoss(),
        device=torch.device("cpu"),
        params=params,
        seed=1,
        state=TrainState(),
        record_lr=True,
        after_epoch=lambda s, metrics, improved: seen.append((s.epoch, improved, sorted(metrics))),
    )
    keys = ["epoch_seconds", "lr", "train_loss", "val_f1"]
    # a tie is no improvement: two epochs without one stop the run before the sixth
    assert seen == [(1, True, keys), (2, True, keys), (3, False, keys), (4, False, keys)]
    assert asked == [0, 1, 2, 3]
    assert (state.epoch, state.best_epoch, state.stopped_early) == (4, 2, True)


def test_the_epoch_loop_continues_a_restored_state() -> None:
    import torch

    arrays = {"pooled": np.ones((4, 3), dtype=np.float32), "label": np.array([0, 1, 2, 3])}
    params = TransformerParams(epochs=5, patience=None, head_lr=None)
    module = head_only()
    optimizer, scheduler = build_optimizer(module, params, total_steps=5)
    asked: list[int] = []

    def batches(epoch: int) -> object:
        asked.append(epoch)
        return array_batches(arrays, 4)

    restored = TrainState(epoch=3, best_epoch=3, history=[{"epoch": float(e)} for e in (1, 2, 3)])
    state = run_epochs(
        module,
        batches,  # type: ignore[arg-type]
        validate=None,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=torch.nn.CrossEntropyLoss(),
        device=torch.device("cpu"),
        params=params,
        seed=1,
        state=restored,
    )
    assert asked == [3, 4]
    assert [entry["epoch"] for entry in state.history] == [1, 2, 3, 4, 5]
    assert sorted(state.history[-1]) == ["epoch", "train_loss"]  # no lr unless asked, no timings ever


def test_each_epoch_has_one_console_line() -> None:
    metrics = {"train_loss": 0.41234, "val_f1": 0.94249, "epoch_seconds": 12.345, "lr": 1e-5}
    assert epoch_summary(3, 5, metrics) == "epoch 3/5: train loss 0.412, validation F1 0.942 (12.3 s)"
    assert epoch_summary(1, 2, {"train_loss": 1.0}) == "epoch 1/2: train loss 1.000"


@pytest.mark.parametrize(
    ("params", "resources", "expected"),
    [
        (TransformerParams(), {"CPU": 2.0}, (1, 2, 0.0)),
        (TransformerParams(num_workers=2), {"CPU": 2.0}, (2, 1, 0.0)),
        (TransformerParams(num_workers=2), {"CPU": 16.0, "GPU": 2.0}, (2, 8, 1.0)),
        (TransformerParams(gpus_per_worker=0), {"CPU": 4.0, "GPU": 1.0}, (1, 4, 0.0)),
        (TransformerParams(cpus_per_worker=1), {"CPU": 8.0}, (1, 1, 0.0)),
    ],
)
def test_worker_plan_from_cluster_resources(
    params: TransformerParams, resources: dict[str, float], expected: tuple[int, int, float]
) -> None:
    plan = plan_workers(params, resources)
    assert (plan.num_workers, plan.cpus_per_worker, plan.gpus_per_worker) == expected
    assert plan.use_gpu is (expected[2] > 0)


def test_worker_plan_refuses_what_the_cluster_lacks() -> None:
    with pytest.raises(ValueError, match="GPUs"):
        plan_workers(TransformerParams(gpus_per_worker=1), {"CPU": 2.0})
    with pytest.raises(ValueError, match="CPUs"):
        plan_workers(TransformerParams(num_workers=2, cpus_per_worker=2), {"CPU": 2.0})


def test_refit_trains_for_the_epoch_validation_picked(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"family": "transformer", "training": {"best_epoch": 4}}))
    refit = refit_params(TransformerParams(epochs=9, patience=2), tmp_path)
    assert isinstance(refit, TransformerParams)
    assert (refit.epochs, refit.patience) == (4, None)
    linear = LinearParams()
    assert refit_params(linear, tmp_path) is linear


def test_refit_keeps_the_early_stopped_transformer_by_default(tmp_path: Path) -> None:
    import pandas as pd

    from tagops.workloads.fit import refit_stage

    (tmp_path / "model.json").write_text(json.dumps({"family": "transformer", "training": {"best_epoch": 2}}))
    kept = refit_stage(
        pd.DataFrame(), TransformerParams(), seed=1, val_model_dir=tmp_path, output_dir=tmp_path / "refit"
    )
    assert kept == tmp_path
    assert not (tmp_path / "refit").exists()
