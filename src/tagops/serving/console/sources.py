"""What the console reads besides the service: monitor summaries, the promotion history, evaluation reports.

Every reader here is read-only and forgiving: a file that is missing, torn or not the shape expected is
skipped with a warning, so a page shows what there is instead of failing. The readers parse JSON only
(no pickle); the pages treat what they read as untrusted text and escape it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.model_ref import ModelRef

if TYPE_CHECKING:
    from tagops.serving.model import ServedModel
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: The holdout report registration logs into the model's MLflow run (``tagops.workloads.register``).
HOLDOUT_ARTIFACT = "evaluation/holdout.json"
#: The copy kept beside a registry version's cached model folder, so a restart does not ask MLflow again.
HOLDOUT_CACHE_FILE = "holdout-report.json"
#: How many monitor windows and history records a page shows (the newest).
RECENT_WINDOWS = 10
RECENT_HISTORY = 20
#: The history is append-only and grows with every gate decision: only its tail is read.
HISTORY_TAIL_BYTES = 1024 * 1024

#: ``evaluation(model)``: the model's holdout evaluation report, or ``None`` when there is none to read.
EvaluationLookup = Callable[["ServedModel"], "dict[str, Any] | None"]


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` (logged) when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as error:
        logger.warning("console: cannot read %s: %s", path, error)
        return None
    if not isinstance(data, dict):
        logger.warning("console: %s is not a JSON object", path)
        return None
    return data


def recent_monitor_summaries(reports_dir: Path, limit: int = RECENT_WINDOWS) -> list[dict[str, Any]]:
    """The newest ``limit`` monitor summaries (``monitor-*/summary.json``), newest first.

    Files are picked by modification time before any is parsed: a scheduled loop leaves a folder per
    window, and a page must not parse thousands of them.
    """
    candidates: list[tuple[float, Path]] = []
    for path in reports_dir.glob("monitor-*/summary.json"):
        try:
            candidates.append((path.stat().st_mtime, path))
        except OSError:  # removed since the glob
            continue
    candidates.sort(key=lambda pair: pair[0], reverse=True)
    summaries = []
    for _, path in candidates[:limit]:
        summary = read_json_object(path)
        if summary is not None:
            summaries.append({**summary, "folder": path.parent.name})
    summaries.sort(key=lambda s: str(s.get("created_at", "")), reverse=True)
    return summaries


def recent_promotion_history(path: Path, limit: int = RECENT_HISTORY) -> list[dict[str, Any]]:
    """The newest ``limit`` records of the promotion history (JSON lines), newest first.

    A torn line (a crash mid-write) is skipped, as ``tagops models history`` skips it.
    """
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - HISTORY_TAIL_BYTES))
            tail = handle.read()
    except FileNotFoundError:
        return []
    except OSError as error:
        logger.warning("console: cannot read %s: %s", path, error)
        return []
    lines = tail.decode("utf-8", errors="replace").splitlines()
    if size > HISTORY_TAIL_BYTES and lines:
        lines = lines[1:]  # the first line of a tail read may be cut
    records: list[dict[str, Any]] = []
    for line in reversed(lines):
        if len(records) >= limit:
            break
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            logger.warning("console: a line of %s is not a complete record (skipped)", path)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass
class RegistryEvaluation:
    """The holdout report logged with a registered model's run, fetched once per version.

    The first look-up of a version imports MLflow and reads the run's ``evaluation/holdout.json``; the
    report is then kept in memory and beside the version's cached model folder, so neither this process
    nor a restarted one asks MLflow again. A failed look-up is retried after ``retry_after_s``.
    """

    settings: Settings
    retry_after_s: float = 60.0
    _reports: dict[str, dict[str, Any] | None] = field(default_factory=dict, repr=False)
    _failed: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, model: ServedModel) -> dict[str, Any] | None:
        """The holdout report of ``model``, or ``None`` (not a registered model, or no report logged)."""
        name, version = model.name, model.version
        run_id = model.predictor.metadata.get("run_id")
        if name is None or version is None or not run_id or not ModelRef.parse(model.uri).in_registry:
            return None
        key = f"{name}/{version}"
        with self._lock:
            if key in self._reports:
                return self._reports[key]
            if time.monotonic() < self._failed.get(key, 0.0):
                return None
        cache = self.settings.models_dir / "registry" / name / str(version) / HOLDOUT_CACHE_FILE
        report = read_json_object(cache) if cache.is_file() else None
        if report is None:
            report = self._from_registry(str(run_id))
            if report is None:
                with self._lock:
                    self._failed[key] = time.monotonic() + self.retry_after_s
                return None
            _write_atomically(cache, report)
        with self._lock:
            self._reports[key] = report
        return report

    def _from_registry(self, run_id: str) -> dict[str, Any] | None:
        try:
            from tagops.registry.client import Registry

            return Registry(self.settings).load_run_dict(run_id, HOLDOUT_ARTIFACT)
        except Exception as error:  # the card falls back to the run's metrics; the page still renders
            logger.warning("console: no holdout report for run %s: %s", run_id, error)
            return None


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON where a version's cache folder exists; a failure only costs a later look-up."""
    if not path.parent.is_dir():
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        partial.write_text(json.dumps(data), encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        logger.warning("console: cannot cache %s: %s", path, error)


@dataclass(frozen=True)
class ConsoleSources:
    """Where the console's pages read what the service does not hold."""

    #: ``tagops monitor`` writes ``monitor-*/summary.json`` here (``Settings.reports_dir``).
    reports_dir: Path
    #: The promotion history (``Settings.promotion_history``).
    promotion_history: Path
    #: The served model's holdout evaluation report (default: from its registry run).
    evaluation: EvaluationLookup

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleSources:
        """The reports, history and registry of ``settings``' home."""
        return cls(settings.reports_dir, settings.promotion_history, RegistryEvaluation(settings))

    @classmethod
    def from_environment(cls) -> ConsoleSources:
        """:meth:`from_settings` of the ``Settings`` in the environment, as serving's entry points read it."""
        from tagops.settings import read_settings

        return cls.from_settings(read_settings())
