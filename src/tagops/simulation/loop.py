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

import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagops.errors import TagopsError
from tagops.simulation.client import Sent, ServiceClient
from tagops.simulation.harness import (
    running_service,
    service_environment,
    wait_for_rows,
    write_serve_config,
)
from tagops.simulation.report import before_after, print_tables, rich_console, shadow_agreement, window_row
from tagops.simulation.traffic import draw_mix, shifted_frame

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import SimulateConfig
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


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
    return dict(result.summary)


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
    from tagops.settings import RetrainSettings, ServeSettings, prepare_environment

    # The simulation's own state: its registry, prediction log and service, never the user's.
    sim = settings.model_copy(
        update={
            "home": folder,
            "mlflow_tracking_uri": None,
            "serve": ServeSettings(database_url=None),
            "retrain": RetrainSettings(service_url=None, admin_key=None),
        }
    )
    prepare_environment(sim)
    result = _simulate(cfg, sim, service_environment(sim), started)
    result["home"] = str(folder)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    target = output or folder / "simulate.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    result["output"] = str(target)
    target.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print_tables(result)
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
    from tagops.settings import RetrainSettings
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
    _, labeller_key = keys.create("tagops simulate labeller", "labeller")
    _, user_key = keys.create("tagops simulate user", "client")
    keys.engine.dispose()
    loop = Loop(cfg, retrain_cfg, sim, registry, dataset, holdout, data.holdout_sha256, timings)
    with running_service(sim, cfg, write_serve_config(sim.home / "serve.yaml", cfg), env) as (url, _):
        loop.mark = _timed(timings, "service_start", mark)
        # The in-process retrain reloads this service; a retrain in a process of its own gets the same.
        loop.sim = sim.model_copy(update={"retrain": RetrainSettings(service_url=url, admin_key=admin_key)})
        loop.env = service_environment(sim, url, admin_key)
        loop.client = ServiceClient(
            url,
            admin_key,
            concurrency=cfg.concurrency,
            request_items=cfg.request_items,
            labeller_key=labeller_key,
        )
        loop.user_key = user_key
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
        #: A client key: its labels wait for review (the users who disagree send with it).
        self.user_key: str | None = None
        #: The environment of a process that works on the simulation's state (set once the service runs).
        self.env: dict[str, str] = {}
        self.rng = np.random.default_rng(cfg.seed)
        self.windows: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {"family": cfg.family, "config": cfg.model_dump(mode="json")}
        self.pending: list[tuple[str, str]] = []
        self.shadowed_items = 0
        #: dataset.csv rewritten in the shifted vocabulary, and the rows of it already sent.
        self.pool: pd.DataFrame | None = None
        self.used: set[int] = set()
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
        self.windows.append(window_row(name, kind, sent, summary))
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
        self.pool = shifted_frame(self.dataset)
        shifted = [
            self.send_window(
                f"shift-{i + 1}",
                "shifted",
                draw_mix(self.pool, cfg.shifted_mix, cfg.window_rows, self.rng, self.used),
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
        # Users who disagree, with a client key: their labels wait for review and do not train.
        self.http.feedback(disagree, key=self.user_key)
        self.result["windows"] = self.windows
        self.mark = _timed(self.timings, "windows", self.mark)
        if self.retrain_and_shadow():
            self.canary_step()
            self.promote_and_compare()

    def retrain_in_pipeline(self) -> dict[str, Any]:
        """``tagops retrain --no-promote`` (the ZenML pipeline) in a process of its own; its JSON result.

        The process gets the simulation's environment, as the service does, so the pipeline's steps read
        the simulation's state folder and service.
        """
        import yaml

        config = self.sim.home / "retrain.yaml"
        config.write_text(
            yaml.safe_dump({"retrain": self.retrain_cfg.model_dump(mode="json")}), encoding="utf-8"
        )
        command = [sys.executable, "-m", "tagops.cli", "retrain", "--no-promote", "--config", str(config)]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TagopsError(f"tagops retrain failed ({done.returncode}): {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

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
            retrained = self.retrain_in_pipeline()
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
        rich_console().print(render_table(report))
        self.mark = _timed(self.timings, "shadow", self.mark)
        return True

    def canary_step(self) -> None:
        """The challenger answers ``canary_weight`` % of one more shifted window; its evidence is recorded.

        The window's items are labelled (labeller key) so the rollout's report has F1 on both sides.
        """
        from tagops.workloads.rollout import current_rollout, rollout_decision

        cfg = self.cfg
        challenger = int(self.result["retrain"]["challenger_version"])
        started = self.http.rollout(
            "POST",
            {"model_uri": f"models:/{self.sim.registered_model}/{challenger}", "weight": cfg.canary_weight},
        )
        assert self.pool is not None
        frame = draw_mix(self.pool, cfg.shifted_mix, cfg.window_rows, self.rng, self.used)
        sent = self.http.predict("canary", frame)
        champion_items = sum(1 for v in sent.versions if v is not None and v != challenger)
        self.shadowed_items += champion_items  # the champion's answers are copied to the shadow too
        wait_for_rows(self.sim, "predictions", self.http.items_sent)
        wait_for_rows(self.sim, "shadow", self.shadowed_items)
        self.http.feedback(list(zip(sent.prediction_ids, sent.truth, strict=True)))
        report = current_rollout(cfg.rollout.model_copy(update={"seed": cfg.seed}), self.sim)
        action, reason = rollout_decision(report, cfg.rollout.policy)
        self.result["canary"] = {
            "started": started,
            "items": len(sent.titles),
            "canary_items": len(sent.titles) - champion_items,
            "report": report,
            "decision": {"action": action, "reason": reason},
        }
        logger.info("simulate: canary at %.0f %%: %s (%s)", cfg.canary_weight, action, reason)
        self.mark = _timed(self.timings, "canary", self.mark)

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
        canary = self.result.get("canary") or {}
        canary_decision = (canary.get("decision") or {}).get("action")
        gate = dict(retrained["gate"])
        if comparison is None or (margin is not None and margin < 0) or canary_decision == "abort":
            gate["promote"] = False
        gate["reason"] = (
            f"{gate['reason']}; shadow window: F1 margin {margin}; canary: {canary_decision} "
            f"({(canary.get('decision') or {}).get('reason')})"
        )
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
                "shadow": {"f1_margin": margin, "rows": None if comparison is None else comparison["rows"]},
                "canary": {
                    "decision": canary_decision,
                    "f1_difference": (canary.get("report") or {}).get("f1_difference"),
                    "canary_items": canary.get("canary_items"),
                },
            },
        )
        self.result["promotion"] = read_history(self.sim.promotion_history)[-1]
        self.result["reload_after_promotion"] = self.http.reload()
        # A promotion made the warm canary the champion (the rollout ends "promoted"); a refusal aborts it.
        rollout = self.http.rollout("GET")
        if rollout["state"] == "active":
            rollout = self.http.rollout("DELETE")
        self.result["canary"]["ended"] = {"state": rollout["state"], "reason": rollout["reason"]}
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
        self.result["shadow_vs_served"] = shadow_agreement(self.sim, old, final)

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
