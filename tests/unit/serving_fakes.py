"""Test doubles for the serving tests: a keyword predictor and a loader that hands out new versions."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tagops import LABELS
from tagops.config import ServeConfig
from tagops.predlog.log import PredictionLog
from tagops.predlog.writer import WriterOptions
from tagops.serving.app import create_app
from tagops.serving.wiring import build_replica
from tagops.settings import Settings

KEYWORDS = {
    "computer-vision": ("image", "vision", "yolo", "pixel"),
    "mlops": ("docker", "kubernetes", "deployment", "serving"),
    "natural-language-processing": ("text", "bert", "language", "nlp"),
}


class FakePredictor:
    """Keyword rules with the Predictor interface; records the size of every predict call."""

    def __init__(
        self, version: int | None = 1, *, threshold: float | None = 0.5, delay_s: float = 0.0
    ) -> None:
        self.threshold = threshold
        self.delay_s = delay_s
        self.calls: list[int] = []
        self._lock = threading.Lock()
        self.metadata: dict[str, Any] = {
            "uri": "models:/tagops@champion",
            "name": "tagops",
            "version": version,
            "run_id": f"run-{version}",
            "aliases": ["champion"],
            "dataset_sha256": "d" * 64,
            "holdout_f1": "0.9",
        }

    def describe(self) -> dict[str, Any]:
        return {"family": "fake", "labels": list(LABELS), "threshold": self.threshold, **self.metadata}

    def predict(self, titles: Sequence[str], descriptions: Sequence[str]) -> list[dict[str, Any]]:
        with self._lock:
            self.calls.append(len(titles))
        if self.delay_s:
            time.sleep(self.delay_s)
        results = []
        for title, description in zip(titles, descriptions, strict=True):
            if "explode" in title:
                raise RuntimeError("secret internal detail")
            text = f"{title} {description}".lower()
            scores = {label: 1.0 for label in LABELS}
            for label, words in KEYWORDS.items():
                scores[label] += 10.0 * sum(word in text for word in words)
            total = sum(scores.values())
            probabilities = {label: round(score / total, 6) for label, score in scores.items()}
            best = max(probabilities, key=lambda label: probabilities[label])
            confidence = probabilities[best]
            abstained = self.threshold is not None and confidence < self.threshold
            results.append(
                {
                    "tag": "other" if abstained else best,
                    "confidence": confidence,
                    "abstained": abstained,
                    "probabilities": probabilities,
                }
            )
        return results


class FakeLoader:
    """Every load returns the next version (or fails when ``fail`` is set)."""

    def __init__(self, start: int = 2, *, delay_s: float = 0.0) -> None:
        self.next_version = start
        self.delay_s = delay_s
        self.fail = False
        self.loaded: list[str] = []

    def resolve(self, uri: str) -> str:
        if self.fail:
            raise RuntimeError("registry unreachable")
        if uri.startswith("models:/tagops/"):
            return uri
        return f"models:/tagops/{self.next_version}"

    def load(self, uri: str) -> FakePredictor:
        self.loaded.append(uri)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("registry unreachable")
        if uri.startswith("models:/tagops/"):
            return FakePredictor(int(uri.rsplit("/", 1)[1]))
        version, self.next_version = self.next_version, self.next_version + 1
        return FakePredictor(version)


def make_store(home: Path, **kwargs: Any) -> PredictionLog:
    """A prediction log in a SQLite file under ``home``; ``kwargs``: writer options and ``on_rows``."""
    on_rows = kwargs.pop("on_rows", None)
    return PredictionLog(
        f"sqlite:///{home / 'serving' / 'predictions.db'}", options=WriterOptions(**kwargs), on_rows=on_rows
    )


def serve_config(**overrides: Any) -> ServeConfig:
    """A config for tests: quick replica sync and log flushes."""
    values: dict[str, Any] = {"sync_interval_s": 0.2, "log_flush_interval_s": 0.05, "key_cache_ttl_s": 0.0}
    values.update(overrides)
    return ServeConfig(**values)


def settings_for(home: Path) -> Settings:
    """Settings rooted at ``home``."""
    return Settings(home=home)


def serve_app(predictor: FakePredictor, settings: Settings, config: ServeConfig, **parts: Any) -> FastAPI:
    """The API of a replica built around ``predictor`` as `tagops serve` builds it, ``parts`` swapped in."""
    replica = build_replica(config, settings, predictor=predictor, **parts)
    return create_app(replica.service, replica.infer)
