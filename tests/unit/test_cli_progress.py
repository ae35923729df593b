"""Progress of long commands: the workloads' callbacks, and the bars drawn only at a terminal."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from tagops.cli.progress import CommandProgress, StepWatcher, wanted
from tagops.config import RulesParams
from tagops.data.clean import build_text
from tagops.inference.predictor import Predictor
from tagops.models.rules import RulesModel
from tagops.models.transformer.progress import current_listener, epoch_listener, notify

from .conftest import make_projects, write_csv

pytestmark = pytest.mark.unit


class Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "as_json", "term", "expected"),
    [
        (True, False, "xterm", True),
        (False, False, "xterm", False),
        (True, True, "xterm", False),
        (True, False, "dumb", False),
    ],
)
def test_bars_only_at_a_terminal_and_never_with_json(
    monkeypatch: pytest.MonkeyPatch, tty: bool, as_json: bool, term: str, expected: bool
) -> None:
    monkeypatch.setattr("sys.stderr", Stderr(tty))
    monkeypatch.setenv("TERM", term)
    assert wanted(json_output=as_json) is expected


def test_disabled_progress_hands_out_no_callbacks() -> None:
    with CommandProgress(enabled=False) as progress, progress.steps(3), progress.epochs():
        assert progress.counter("rows") is None
        assert current_listener() is None


def drawn() -> tuple[CommandProgress, io.StringIO]:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    return CommandProgress(enabled=True, console=console), screen


def tasks(progress: CommandProgress) -> dict[str, tuple[float, float | None]]:
    return {t.description: (t.completed, t.total) for t in progress._progress.tasks}


def test_a_counter_draws_a_bar_and_starts_it_again_for_a_second_run() -> None:
    progress, screen = drawn()
    with progress:
        update = progress.counter("epochs")
        assert update is not None
        update(1, 3)
        update(3, 3)
        assert tasks(progress) == {"epochs": (3, 3)}
        update(1, 5)  # a refit after the first run
        assert tasks(progress) == {"epochs": (1, 5)}
    update(2, 5)  # after the command: ignored
    assert "epochs" in screen.getvalue()


def test_epochs_reach_the_bar_through_the_listener() -> None:
    progress, _ = drawn()
    with progress, progress.epochs():
        notify(current_listener(), 2, 4)
        assert tasks(progress) == {"epochs": (2, 4)}
    assert current_listener() is None


def test_a_failing_listener_never_fails_training() -> None:
    def broken(epoch: int, epochs: int) -> None:
        raise RuntimeError("the terminal went away")

    with epoch_listener(broken):
        notify(current_listener(), 1, 2)  # logged at debug, not raised


class Shown:
    """Records what a :class:`StepWatcher` asks its progress to show."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int | None]] = []

    def show(self, name: str, *, description: str, done: int, total: int | None) -> None:
        self.calls.append((description, done, total))


def record(name: str, msg: str, *args: Any, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_steps_follow_zenml_and_the_in_process_runner() -> None:
    shown = Shown()
    zenml = StepWatcher(shown, total=3)  # type: ignore[arg-type]
    launcher = "zenml.orchestrators.step_launcher"
    zenml.emit(record(launcher, "Step `pull_step` has started."))
    zenml.emit(record(launcher, "Step `pull_step` has finished in 0.512s."))
    zenml.emit(
        record("zenml.orchestrators.step_run_utils", "Using cached version of step `%s`.", "split_step")
    )
    zenml.emit(record(launcher, "Something else."))
    assert shown.calls == [("steps: pull_step", 0, 3), ("steps", 1, 3), ("steps", 2, 3)]

    shown = Shown()
    runner = StepWatcher(shown, total=None)  # type: ignore[arg-type]
    stages = "tagops.workloads.stages"
    runner.emit(record(stages, "stage %d/%d: %s", 1, 2, "read_step", level=logging.DEBUG))
    runner.emit(record(stages, "stage %s took %.1fs", "read_step", 0.1, level=logging.DEBUG))
    runner.emit(record(stages, "stage %d/%d: %s", 2, 2, "write_step", level=logging.DEBUG))
    assert shown.calls == [("steps: read_step", 0, 2), ("steps", 1, 2), ("steps: write_step", 1, 2)]


def test_steps_watch_the_runner_for_the_block_only() -> None:
    stages = logging.getLogger("tagops.workloads.stages")
    level = stages.level
    progress, _ = drawn()
    with progress, progress.steps():
        assert stages.isEnabledFor(logging.DEBUG)
        stages.debug("stage %d/%d: %s", 1, 4, "pull_step")
        assert tasks(progress) == {"steps: pull_step": (0, 4)}
    assert stages.level == level
    assert not any(isinstance(h, StepWatcher) for h in stages.handlers)


# --------------------------------------------------------------------------------------- workloads
@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    frame = make_projects(8)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    folder = tmp_path_factory.mktemp("progress-model") / "rules"
    RulesModel(RulesParams(min_term_count=2)).fit(texts, frame.tag.tolist()).save(folder)
    return Predictor.from_directory(folder)


def test_batch_prediction_reports_rows_and_writes_the_same_file(
    predictor: Predictor, tmp_path: Path, tagops_home: Path
) -> None:
    from tagops.settings import Settings
    from tagops.workloads.batch import predict_file

    source = write_csv(tmp_path / "in.csv", make_projects(3).drop(columns=["tag"]))
    calls: list[tuple[int, int]] = []
    settings = Settings(home=tagops_home)
    rows = predict_file(
        predictor,
        source,
        tmp_path / "a.jsonl",
        settings,
        engine="local",
        batch_size=5,
        on_progress=lambda *c: calls.append(c),
    )
    assert rows == 12 and calls == [(5, 12), (10, 12), (12, 12)]
    predict_file(predictor, source, tmp_path / "b.jsonl", settings, engine="local", batch_size=5)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_batch_prediction_refuses_an_unwritable_output_before_predicting(
    predictor: Predictor, tmp_path: Path, tagops_home: Path
) -> None:
    from tagops.errors import DataError
    from tagops.settings import Settings
    from tagops.workloads.batch import predict_file

    source = write_csv(tmp_path / "in.csv", make_projects(3).drop(columns=["tag"]))
    (tmp_path / "out.jsonl").mkdir()
    calls: list[tuple[int, int]] = []
    with pytest.raises(DataError, match="is a folder"):
        predict_file(
            predictor,
            source,
            tmp_path / "out.jsonl",
            Settings(home=tagops_home),
            engine="local",
            on_progress=lambda *c: calls.append(c),
        )
    assert calls == []  # nothing was predicted


def test_tune_counts_ended_trials_for_the_search_running_now() -> None:
    import ray.cloudpickle as pickle

    from tagops.workloads.tune import _trial_listener, trial_progress_class

    callback = trial_progress_class()(4)
    seen: list[tuple[int, int]] = []
    trials = [SimpleNamespace(status=s) for s in ("TERMINATED", "RUNNING", "ERROR", "PENDING")]
    with _trial_listener(lambda *c: seen.append(c)):
        callback.on_step_end(iteration=1, trials=trials)
        callback.on_step_end(iteration=2, trials=trials)  # nothing new: not reported again
        # Tune saves its callbacks with the experiment; a resumed search runs the saved one.
        restored = pickle.loads(pickle.dumps(callback))
        restored.on_step_end(iteration=3, trials=[*trials, SimpleNamespace(status="TERMINATED")])
    callback.on_step_end(iteration=4, trials=[SimpleNamespace(status="TERMINATED")] * 4)  # no search
    assert seen == [(2, 4), (3, 5)]


def test_a_transformer_fit_reports_each_epoch(encoder_dir: Path) -> None:
    from tagops.config import TransformerParams
    from tagops.models.transformer import TransformerModel

    frame = make_projects(2)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    params = TransformerParams.model_validate(
        {"encoder": str(encoder_dir), "engine": "local", "max_length": 16, "batch_size": 8, "epochs": 2}
    )
    seen: list[tuple[int, int]] = []
    with epoch_listener(lambda *e: seen.append(e)):
        TransformerModel(params).fit(texts, frame.tag.tolist(), seed=1)
    assert seen == [(1, 2), (2, 2)]
