"""The whole loop on a replayed stream, through a running service: ``tagops simulate``.

``tagops simulate [--family linear] [--windows N] [--port P] [--engine uvicorn|ray]`` works in a state
folder of its own (a new one under ``TAGOPS_HOME/simulations``: its registry, prediction log and ZenML
store), so it never touches the user's champion:

1. trains the family on dataset.csv and makes it champion;
2. starts ``tagops serve`` on 127.0.0.1 with the challenger in shadow, and an admin key;
3. sends in-distribution windows (the holdout, resampled), then shifted windows (dataset.csv projects
   rewritten in an unseen vocabulary, every word spelled backwards, with a changed topic mix) and runs
   ``tagops monitor`` on each window; each window's labels arrive as feedback one window late, a few of
   them contradicted by a second label;
4. asks the retrain policy (``--if-needed`` with the latest summary), retrains with the feedback (the
   ZenML pipeline) and registers the challenger without promoting it; the service reloads and shadows it;
5. sends the shifted holdout (the holdout rewritten the same way; never training feedback) for one
   window, with its labels, and writes the shadow report;
6. promotes if both gates and the shadow window agree, reloads the service, sends the shifted holdout
   again, and prints the before/after table: weighted F1 of the old and the new champion on the shifted
   holdout, with bootstrap intervals and the paired interval of the margin;
7. stops the service and counts: every item sent is a prediction row, every feedback accepted a feedback
   row, every item sent while a shadow ran a shadow row.

Everything measured comes from the service's answers and the prediction log; nothing is assumed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagops.errors import TagopsError

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from tagops.config import SimulateConfig
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[A-Za-z]+")
#: Environment variables the simulation points at its own state (restored afterwards).
_ISOLATED = (
    "TAGOPS_HOME",
    "ZENML_CONFIG_PATH",
    "MLFLOW_TRACKING_URI",
    "TAGOPS_MLFLOW_TRACKING_URI",
    "TAGOPS_SERVE_DATABASE_URL",
    "TAGOPS_RETRAIN_SERVICE_URL",
    "TAGOPS_RETRAIN_ADMIN_KEY",
)


# ------------------------------------------------------------------------------------------ traffic
def rewrite_vocabulary(text: str) -> str:
    """Every word spelled backwards: the same projects in a vocabulary no model trained here has seen."""
    return _WORD.sub(lambda match: match.group(0)[::-1], text)


def shifted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with titles and descriptions rewritten by :func:`rewrite_vocabulary` (labels kept)."""
    shifted = frame.copy()
    shifted["title"] = [rewrite_vocabulary(str(t)) for t in shifted["title"]]
    shifted["description"] = [rewrite_vocabulary(str(d)) for d in shifted["description"]]
    return shifted


def draw_mix(
    pool: pd.DataFrame, mix: dict[str, float], rows: int, rng: np.random.Generator, used: set[int]
) -> pd.DataFrame:
    """``rows`` rows of ``pool`` in the tag shares of ``mix``, without replacement across calls (``used``).

    A tag whose unused rows run out is topped up with replacement (those repeats are duplicates that
    retraining drops).
    """
    import pandas as pd

    total = sum(mix.values())
    picks: list[int] = []
    for tag, share in sorted(mix.items()):
        want = round(rows * share / total)
        candidates = [i for i in np.flatnonzero((pool["tag"] == tag).to_numpy()) if i not in used]
        fresh = list(rng.permutation(candidates)[:want]) if candidates else []
        if len(fresh) < want:
            everything = np.flatnonzero((pool["tag"] == tag).to_numpy())
            if len(everything):
                fresh += list(rng.choice(everything, size=want - len(fresh), replace=True))
        used.update(int(i) for i in fresh)
        picks.extend(int(i) for i in fresh)
    order = rng.permutation(len(picks))
    return pd.DataFrame(pool.iloc[[picks[i] for i in order]]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ service
@dataclass
class Sent:
    """What one phase sent and got back."""

    name: str
    since: datetime
    until: datetime
    titles: list[str]
    descriptions: list[str]
    truth: list[str]
    prediction_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    top_tags: list[str] = field(default_factory=list)
    versions: list[int | None] = field(default_factory=list)
    failed_requests: int = 0


class ServiceClient:
    """Requests to the running service: batches of predictions and single feedback posts, concurrently."""

    def __init__(self, url: str, admin_key: str, *, concurrency: int, request_items: int) -> None:
        import httpx

        self.url = url
        self.key = admin_key
        self.concurrency = concurrency
        self.request_items = request_items
        self.http: httpx.Client = httpx.Client(
            base_url=url,
            timeout=60.0,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.items_sent = 0
        self.failed_requests = 0
        self.feedback_accepted = 0
        self.feedback_failed = 0

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def predict(self, name: str, frame: pd.DataFrame) -> Sent:
        """Send ``frame``'s items in requests of ``request_items``; answers kept in order."""
        titles = [str(t) for t in frame["title"]]
        descriptions = [str(d) for d in frame["description"]]
        sent = Sent(
            name, datetime.now(UTC), datetime.now(UTC), titles, descriptions, [str(t) for t in frame["tag"]]
        )
        chunks = [
            range(i, min(i + self.request_items, len(titles)))
            for i in range(0, len(titles), self.request_items)
        ]

        def post(chunk: range) -> list[dict[str, Any]] | None:
            body = {"items": [{"title": titles[i], "description": descriptions[i]} for i in chunk]}
            response = self.http.post("/v1/predict", json=body)
            if response.status_code != 200:
                logger.error(
                    "simulate: /v1/predict answered %d: %s", response.status_code, response.text[:200]
                )
                return None
            answer: dict[str, Any] = response.json()
            version = answer["model"]["version"]
            return [{**p, "version": version} for p in answer["predictions"]]

        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(post, chunks))
        for chunk, answer in zip(chunks, answers, strict=True):
            self.items_sent += len(chunk)
            if answer is None:
                sent.failed_requests += 1
                self.failed_requests += 1
                answer = [{"prediction_id": "", "tag": "", "probabilities": {}, "version": None}] * len(chunk)
            for prediction in answer:
                sent.prediction_ids.append(str(prediction["prediction_id"]))
                sent.tags.append(str(prediction["tag"]))
                probabilities = prediction["probabilities"] or {"": 0.0}
                sent.top_tags.append(max(probabilities, key=lambda k: float(probabilities[k])))
                sent.versions.append(prediction["version"])
        sent.until = datetime.now(UTC)
        return sent

    def feedback(self, pairs: list[tuple[str, str]]) -> int:
        """POST each (prediction id, tag); returns how many were stored (201)."""

        def post(pair: tuple[str, str]) -> bool:
            response = self.http.post(
                "/v1/feedback",
                json={"prediction_id": pair[0], "tag": pair[1]},
                headers={"Authorization": f"Bearer {self.key}"},
            )
            if response.status_code != 201:
                logger.error(
                    "simulate: /v1/feedback answered %d: %s", response.status_code, response.text[:200]
                )
            return response.status_code == 201

        with ThreadPoolExecutor(self.concurrency) as pool:
            stored = sum(pool.map(post, [p for p in pairs if p[0]]))
        self.feedback_accepted += stored
        self.feedback_failed += len(pairs) - stored
        return stored

    def reload(self) -> dict[str, Any]:
        """POST /v1/admin/reload with the admin key."""
        response = self.http.post("/v1/admin/reload", headers={"Authorization": f"Bearer {self.key}"})
        if response.status_code != 200:
            raise TagopsError(f"simulate: reload answered {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body


@contextlib.contextmanager
def running_service(
    settings: Settings, cfg: SimulateConfig, config_path: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``tagops serve`` in a child process; yields its URL; SIGTERM (the log is flushed) on the way out."""
    from tagops.serving.server import bind_socket

    port = cfg.port
    if cfg.engine == "ray" and port == 0:  # Ray Serve needs a port chosen up front
        probe = bind_socket("127.0.0.1", 0)
        port = probe.getsockname()[1]
        probe.close()
    command = [
        *(sys.executable, "-m", "tagops.cli", "serve", "--engine", cfg.engine),
        *("--port", str(port), "--config", str(config_path)),
    ]
    log_path = settings.home / "service.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the server prints its URL once it answers (or exits)
            if not line.startswith("serving "):
                raise TagopsError(f"the service did not start; see {log_path}")
            url = line.split(" at ")[1].split(" ")[0]
            logger.info("simulate: service at %s (log: %s)", url, log_path)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)


def wait_for_rows(settings: Settings, table_name: str, expected: int, *, timeout_s: float = 60.0) -> int:
    """Poll until ``table_name`` holds ``expected`` rows (or the timeout); returns the count."""
    from tagops.predlog import schema
    from tagops.predlog.log import PredictionLog

    table = {
        "predictions": schema.predictions,
        "feedback": schema.feedback,
        "shadow": schema.shadow_predictions,
    }[table_name]
    deadline = time.monotonic() + timeout_s
    with PredictionLog.from_config(None, settings) as log:
        while True:
            count = log.reader.count_rows(table)
            if count >= expected or time.monotonic() > deadline:
                return count
            time.sleep(0.1)


# ------------------------------------------------------------------------------------------ phases
def monitor_window(
    sent: Sent, cfg: SimulateConfig, settings: Settings, registry: Registry, embedder: Any
) -> dict[str, Any]:
    """``tagops monitor`` on the window ``sent`` covers (in-process; the embedder is loaded once)."""
    from tagops.workloads.monitor import run_monitor

    result = run_monitor(
        cfg.monitor,
        settings,
        since=sent.since,
        until=sent.until,
        output_dir=settings.reports_dir / f"monitor-{sent.name}",
        registry=registry,
        embedder=embedder,
    )
    return result.summary


def f1_with_ci(truth: list[str], predicted: list[str], *, samples: int, seed: int) -> dict[str, Any]:
    """Weighted F1 and its bootstrap 95 % interval."""
    from tagops.metrics import bootstrap_ci, weighted_f1

    return {
        "f1": weighted_f1(truth, predicted),
        "f1_ci95": bootstrap_ci(truth, predicted, samples=samples, seed=seed),
    }


def before_after(
    truth: list[str], old: list[str], new: list[str], *, samples: int, seed: int
) -> dict[str, Any]:
    """Old vs new champion on the same items: F1 of each with its interval, the margin and its interval."""
    from tagops.metrics import bootstrap_f1_difference

    before = f1_with_ci(truth, old, samples=samples, seed=seed)
    after = f1_with_ci(truth, new, samples=samples, seed=seed)
    return {
        "rows": len(truth),
        "old": before,
        "new": after,
        "margin": after["f1"] - before["f1"],
        "margin_ci95": bootstrap_f1_difference(truth, old, new, samples=samples, seed=seed),
    }


def _environment(settings: Settings, url: str | None = None, key: str | None = None) -> dict[str, str]:
    from tagops.settings import QUIET_ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
    env.update(QUIET_ENVIRONMENT)
    env.update({"TAGOPS_HOME": str(settings.home), "ZENML_CONFIG_PATH": str(settings.zenml_dir)})
    if url:
        env["TAGOPS_RETRAIN_SERVICE_URL"] = url
    if key:
        env["TAGOPS_RETRAIN_ADMIN_KEY"] = key
    return env


@contextlib.contextmanager
def _process_environment(env: dict[str, str]) -> Iterator[None]:
    """Run with ``env``'s isolation variables in this process (ZenML steps read Settings() from it)."""
    saved = {k: os.environ.get(k) for k in _ISOLATED}
    for key in _ISOLATED:
        os.environ.pop(key, None)
        if key in env:
            os.environ[key] = env[key]
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _serve_yaml(path: Path, cfg: SimulateConfig) -> Path:
    import yaml

    config = {
        "model_uri": "models:/tagops@champion",
        "shadow_model_uri": "models:/tagops@challenger",
        "engine": cfg.engine,
        "host": "127.0.0.1",
        "num_cpus": 1.0,
        "log_flush_interval_s": 0.05,
        "sync_interval_s": 0.5,
        "key_cache_ttl_s": 60.0,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ the run
def run_simulation(
    cfg: SimulateConfig, settings: Settings, *, home: Path | None = None, output: Path | None = None
) -> dict[str, Any]:
    """Run the loop end to end (see the module docstring); returns (and writes) the JSON result."""
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = (home or settings.home / "simulations" / stamp).expanduser().resolve()
    if folder.exists() and any(folder.iterdir()):
        raise TagopsError(f"{folder}: the simulation folder must be new or empty")
    sim = settings.model_copy(update={"home": folder, "mlflow_tracking_uri": None})
    from tagops.settings import prepare_environment

    env = _environment(sim)
    with _process_environment(env):
        prepare_environment(sim)
        result = _simulate(cfg, sim, env, started)
    result["home"] = str(folder)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    target = output or folder / "simulate.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    result["output"] = str(target)
    target.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    _print_tables(result)
    return result


def _timed(timings: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    timings[name] = round(now - since, 1)
    return now


def _simulate(cfg: SimulateConfig, sim: Settings, env: dict[str, str], started: float) -> dict[str, Any]:
    from tagops.config import TrainConfig
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.registry.client import Registry
    from tagops.serving.keys import KeyStore
    from tagops.workloads.promote import promote
    from tagops.workloads.train import run_training

    timings: dict[str, float] = {}
    train_raw = cfg.retrain.train.model_dump(mode="json")
    train_raw["model"] = {"family": cfg.family}
    retrain_cfg = cfg.retrain.model_copy(update={"train": TrainConfig.model_validate(train_raw)})
    registry = Registry(sim)
    data = pull_stage(sim, retrain_cfg.train.data)
    dataset, holdout = validate_stage(data)
    first = run_training(
        retrain_cfg.train, sim, registry=registry, data=data, run_name=f"simulate-{cfg.family}"
    )
    assert first.version is not None
    promote(
        registry,
        holdout=holdout,
        eval_cfg=retrain_cfg.train.evaluation,
        gate=retrain_cfg.gate,
        history=sim.promotion_history,
        version=first.version,
        holdout_sha256=data.holdout_sha256,
        trigger="initial",
    )
    mark = _timed(timings, "initial_champion", started)

    keys = KeyStore.from_config(None, sim)
    _, admin_key = keys.create("tagops simulate", "admin")
    keys.engine.dispose()
    loop = Loop(cfg, retrain_cfg, sim, registry, dataset, holdout, data.holdout_sha256, timings)
    with running_service(sim, cfg, _serve_yaml(sim.home / "serve.yaml", cfg), env) as (url, _):
        loop.mark = _timed(timings, "service_start", mark)
        os.environ["TAGOPS_RETRAIN_SERVICE_URL"], os.environ["TAGOPS_RETRAIN_ADMIN_KEY"] = url, admin_key
        loop.client = ServiceClient(
            url, admin_key, concurrency=cfg.concurrency, request_items=cfg.request_items
        )
        try:
            loop.run()
        finally:
            loop.client.close()
    return loop.finish()


class Loop:
    """The phases of one simulation against a running service, and what they measured."""

    def __init__(
        self,
        cfg: SimulateConfig,
        retrain_cfg: Any,
        sim: Settings,
        registry: Registry,
        dataset: pd.DataFrame,
        holdout: pd.DataFrame,
        holdout_sha256: str,
        timings: dict[str, float],
    ) -> None:
        self.cfg = cfg
        self.retrain_cfg = retrain_cfg
        self.sim = sim
        self.registry = registry
        self.dataset = dataset
        self.holdout = holdout
        self.holdout_sha256 = holdout_sha256
        self.timings = timings
        self.client: ServiceClient | None = None
        self.rng = np.random.default_rng(cfg.seed)
        self.windows: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {"family": cfg.family, "config": cfg.model_dump(mode="json")}
        self.pending: list[tuple[str, str]] = []
        self.shadowed_items = 0
        self.embedder: Any = None
        self.mark = time.perf_counter()

    @property
    def http(self) -> ServiceClient:
        """The client of the running service."""
        if self.client is None:
            raise TagopsError("the service is not running")
        return self.client

    def send_window(self, name: str, kind: str, frame: pd.DataFrame) -> Sent:
        """Send one window, monitor it, then deliver the previous window's labels (one window late)."""
        sent = self.http.predict(name, frame)
        wait_for_rows(self.sim, "predictions", self.http.items_sent)
        summary = monitor_window(sent, self.cfg, self.sim, self.registry, self.embedder)
        self.windows.append(_window_row(name, kind, sent, summary))
        logger.info(
            "simulate: window %s (%s): %d rows, alarm %s, drifted %s",
            *(name, kind, summary["num_rows"], summary["alarm"], summary["drifted"]),
        )
        self.deliver_pending()
        self.pending = list(zip(sent.prediction_ids, sent.truth, strict=True))
        return sent

    def deliver_pending(self) -> None:
        """Send the labels held back so far, after the configured delay."""
        if self.pending:
            time.sleep(self.cfg.feedback_delay_s)
            self.http.feedback(self.pending)
            self.pending = []

    def run(self) -> None:
        """Windows → policy → retrain → shadow → promote → reload → final window."""
        from tagops.monitoring.reference import create_embedder

        cfg = self.cfg
        self.embedder = create_embedder(cfg.monitor.reference.embedder)
        for index in range(cfg.in_distribution_windows):
            picks = self.rng.integers(0, len(self.holdout), size=cfg.window_rows)
            self.send_window(
                f"in-{index + 1}", "in-distribution", self.holdout.iloc[picks].reset_index(drop=True)
            )
        used: set[int] = set()
        pool = shifted_frame(self.dataset)
        shifted = [
            self.send_window(
                f"shift-{i + 1}", "shifted", draw_mix(pool, cfg.shifted_mix, cfg.window_rows, self.rng, used)
            )
            for i in range(cfg.shifted_windows)
        ]
        self.deliver_pending()
        labels = sorted(set(self.dataset["tag"]))
        disagree = [
            (prediction_id, next(t for t in labels if t != tag))
            for prediction_id, tag in list(zip(shifted[0].prediction_ids, shifted[0].truth, strict=True))[
                : cfg.conflicting_feedback
            ]
        ]
        self.http.feedback(disagree)  # users who disagree: conflicting labels retraining must drop
        self.result["windows"] = self.windows
        self.mark = _timed(self.timings, "windows", self.mark)
        if self.retrain_and_shadow():
            self.promote_and_compare()

    def retrain_and_shadow(self) -> bool:
        """Ask the policy, retrain without promoting, and shadow the challenger for one window."""
        from tagops.monitoring.shadow import render_table, shadow_report
        from tagops.workloads.retrain import run_retrain
        from tagops.workloads.retrain_policy import consult_policy

        decision = consult_policy(
            self.retrain_cfg,
            self.sim,
            self.registry,
            if_needed=True,
            summary=self.windows[-1]["summary"],
            feedback_rows=None,
        )
        self.result["policy"] = {"run": decision.run, "reason": decision.reason}
        if not decision.run:
            logger.error("simulate: the policy did not ask for a retrain: %s", decision.reason)
            return False
        if self.cfg.pipeline:
            from tagops.pipelines.retraining import run_retraining_pipeline

            retrained = run_retraining_pipeline(self.retrain_cfg, trigger=decision.reason, promote=False)
        else:
            retrained = run_retrain(
                self.retrain_cfg, self.sim, promote=False, registry=self.registry, trigger=decision.reason
            ).to_json()
        self.result["retrain"] = retrained
        self.mark = _timed(self.timings, "retrain", self.mark)
        challenger = int(retrained["challenger_version"])
        reload = retrained.get("reload") or self.http.reload()
        self.result["reload_for_shadow"] = reload
        if (reload.get("shadow") or {}).get("version") != challenger:
            raise TagopsError(f"the service does not shadow the challenger (version {challenger}): {reload}")
        self.shifted_holdout = shifted_frame(self.holdout)
        sent = self.http.predict("shadow", self.shifted_holdout)
        self.shadow_sent = sent
        self.shadowed_items += len(sent.titles)
        wait_for_rows(self.sim, "predictions", self.http.items_sent)
        wait_for_rows(self.sim, "shadow", self.shadowed_items)
        time.sleep(self.cfg.feedback_delay_s)
        self.http.feedback(list(zip(sent.prediction_ids, sent.truth, strict=True)))
        report = shadow_report(
            self.cfg.monitor,
            self.sim,
            since=sent.since,
            until=datetime.now(UTC),
            output=self.sim.reports_dir / "shadow.json",
        )
        self.result["shadow_report"] = report
        _console().print(render_table(report))
        self.mark = _timed(self.timings, "shadow", self.mark)
        return True

    def promote_and_compare(self) -> None:
        """Both gates and the shadow window decide; reload; the final window; the before/after table."""
        from tagops.registry.client import CHALLENGER
        from tagops.workloads.promote import read_history
        from tagops.workloads.retrain import record_promotion

        retrained = self.result["retrain"]
        challenger = int(retrained["challenger_version"])
        comparison = next(
            (c for c in self.result["shadow_report"]["comparisons"] if c["shadow_version"] == challenger),
            None,
        )
        margin = None if comparison is None else comparison["f1_margin"]
        gate = dict(retrained["gate"])
        if comparison is None or (margin is not None and margin < 0):
            gate["promote"] = False
        gate["reason"] = f"{gate['reason']}; shadow window: F1 margin {margin}"
        self.result["promoted"] = record_promotion(
            self.registry,
            self.sim,
            challenger=challenger,
            champion=retrained["champion_version"],
            gate=gate,
            cfg=self.retrain_cfg,
            trigger=self.result["policy"]["reason"],
            holdout_sha256=self.holdout_sha256,
            evidence={
                "shadow": {"f1_margin": margin, "rows": None if comparison is None else comparison["rows"]}
            },
        )
        self.result["promotion"] = read_history(self.sim.promotion_history)[-1]
        self.result["reload_after_promotion"] = self.http.reload()
        self.result["challenger_alias"] = self.registry.alias_version(CHALLENGER)
        final = self.http.predict("final", self.shifted_holdout)
        wait_for_rows(self.sim, "predictions", self.http.items_sent)
        if (self.result["reload_after_promotion"] or {}).get("shadow"):
            # A refused challenger stays in shadow, so the final window is scored in shadow too.
            self.shadowed_items += len(final.titles)
            wait_for_rows(self.sim, "shadow", self.shadowed_items)
        self.mark = _timed(self.timings, "promote_and_final", self.mark)
        old, samples, seed = self.shadow_sent, self.cfg.bootstrap_samples, self.cfg.seed
        self.result["before_after"] = {
            "old_version": old.versions[0] if old.versions else None,
            "new_version": final.versions[0] if final.versions else None,
            "served": before_after(old.truth, old.tags, final.tags, samples=samples, seed=seed),
            "top_answer": before_after(old.truth, old.top_tags, final.top_tags, samples=samples, seed=seed),
            "original_holdout": {
                name: retrained["reports"].get(name) for name in ("champion_holdout", "challenger_holdout")
            },
            "recent_window": {
                name: retrained["reports"].get(name) for name in ("champion_recent", "challenger_recent")
            },
        }
        self.result["shadow_vs_served"] = _shadow_agreement(self.sim, old, final)

    def finish(self) -> dict[str, Any]:
        """Count the log's rows against what was sent (the service has stopped: its queues are flushed)."""
        from tagops.predlog import schema
        from tagops.predlog.log import PredictionLog

        client = self.http
        with PredictionLog.from_config(None, self.sim) as log:
            counts = {
                "prediction_rows": log.reader.count_rows(schema.predictions),
                "feedback_rows": log.reader.count_rows(schema.feedback),
                "shadow_rows": log.reader.count_rows(schema.shadow_predictions),
            }
        rows = {
            "items_sent": client.items_sent,
            "failed_requests": client.failed_requests,
            "feedback_accepted": client.feedback_accepted,
            "feedback_refused": client.feedback_failed,
            "shadowed_items_sent": self.shadowed_items,
            **counts,
        }
        rows["lost_predictions"] = rows["items_sent"] - rows["prediction_rows"]
        rows["lost_feedback"] = rows["feedback_accepted"] - rows["feedback_rows"]
        rows["missing_shadow_rows"] = rows["shadowed_items_sent"] - rows["shadow_rows"]
        self.result["rows"] = rows
        self.result["timings_s"] = self.timings
        self.result["windows"] = self.windows
        in_windows = [w for w in self.windows if w["kind"] == "in-distribution"]
        shifted = [w for w in self.windows if w["kind"] == "shifted"]
        served = (self.result.get("before_after") or {}).get("served") or {}
        ci = served.get("margin_ci95")
        self.result["verdict"] = {
            "in_distribution_false_alarms": sum(bool(w["alarm"]) for w in in_windows),
            "first_shifted_window_alarm": bool(shifted and shifted[0]["drift_alarm"]),
            "retrained": "retrain" in self.result,
            "promoted": bool(self.result.get("promoted")),
            "reloaded_to_new_champion": (self.result.get("reload_after_promotion") or {})
            .get("current", {})
            .get("version")
            == (self.result.get("retrain") or {}).get("challenger_version"),
            "f1_margin": served.get("margin"),
            "f1_margin_ci95": ci,
            "improved": bool(ci and ci[0] > 0),
            "no_row_lost": rows["lost_predictions"] == 0
            and rows["lost_feedback"] == 0
            and rows["failed_requests"] == 0
            and rows["missing_shadow_rows"] == 0,
        }
        return self.result


def _window_row(name: str, kind: str, sent: Sent, summary: dict[str, Any]) -> dict[str, Any]:
    adjusted = [t["p_adjusted"] for t in summary.get("tests", []) if t.get("p_adjusted") is not None]
    return {
        "name": name,
        "kind": kind,
        "since": sent.since.isoformat(),
        "until": sent.until.isoformat(),
        "rows": summary["num_rows"],
        "alarm": summary["alarm"],
        "drift_alarm": summary["drift_alarm"],
        "drifted": summary["drifted"],
        "min_p_adjusted": min(adjusted) if adjusted else None,
        "oov_token_rate": (summary.get("window") or {}).get("oov_token_rate"),
        "summary": summary,
    }


def _shadow_agreement(sim: Settings, shadow_window: Sent, final: Sent) -> dict[str, Any]:
    """How often the challenger's shadow answers equal what it served once promoted (same items)."""
    from tagops.predlog.log import PredictionLog

    with PredictionLog.from_config(None, sim) as log:
        shadow = log.reader.read_shadow_tags(shadow_window.prediction_ids)
    pairs = [
        (shadow[pid], served)
        for pid, served in zip(shadow_window.prediction_ids, final.tags, strict=True)
        if pid in shadow
    ]
    return {"rows": len(pairs), "agreement": float(np.mean([a == b for a, b in pairs])) if pairs else None}


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, width=110)


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "" if value is None else format(float(value), spec)


def _ci(values: list[float] | None) -> str:
    return "" if not values else f"{values[0]:.3f} to {values[1]:.3f}"


def _print_tables(result: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    windows = Table(title="windows")
    for column in ("window", "kind", "rows", "alarm", "drifted (Holm, p < alpha)", "min adj. p", "OOV rate"):
        windows.add_column(column)
    for w in result.get("windows", []):
        windows.add_row(
            w["name"],
            w["kind"],
            str(w["rows"]),
            "ALARM" if w["alarm"] else "-",
            ", ".join(w["drifted"]),
            _fmt(w["min_p_adjusted"], ".2g"),
            _fmt(w["oov_token_rate"], ".3f"),
        )
    console.print(windows)
    comparison = result.get("before_after")
    if comparison:
        table = Table(
            title=f"before/after on the shifted holdout ({comparison['served']['rows']} rows): "
            f"v{comparison['old_version']} -> v{comparison['new_version']}"
        )
        for column in ("answers", "old F1", "old 95% CI", "new F1", "new 95% CI", "margin", "margin 95% CI"):
            table.add_column(column)
        for name in ("served", "top_answer"):
            c = comparison[name]
            table.add_row(
                name,
                _fmt(c["old"]["f1"]),
                _ci(c["old"]["f1_ci95"]),
                _fmt(c["new"]["f1"]),
                _ci(c["new"]["f1_ci95"]),
                _fmt(c["margin"], "+.4f"),
                _ci(c["margin_ci95"]),
            )
        console.print(table)
    console.print(f"rows: {result.get('rows')}")
    console.print(f"verdict: {result.get('verdict')}")
