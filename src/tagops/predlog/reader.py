"""Read the prediction log: the queries monitoring, the shadow report, retraining and the simulation use.

Every query is read-only and opens a connection of its own, so one :class:`LogReader` serves any thread.
Times are timezone-aware; windows are half-open, ``[since, until)``, oldest row first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, Table, func, select
from sqlalchemy.engine import Engine

from tagops.predlog.schema import api_keys, feedback, feedback_reviews, predictions, shadow_predictions


class LogReader:
    """The read side of the prediction log of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def count_predictions(self) -> int:
        """Rows in the prediction log."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(predictions)).scalar_one())

    def prediction_exists(self, prediction_id: str) -> bool:
        """Whether a prediction with this id has been written."""
        query = select(predictions.c.id).where(predictions.c.id == prediction_id)
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def read_predictions(
        self,
        *,
        since: datetime,
        until: datetime,
        model_version: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Predictions made in ``[since, until)`` (read-only; oldest first), optionally of one model version.

        Each row has the columns the monitor needs: ``id``, ``created_at``, ``title``, ``description``,
        ``tag``, ``confidence``, ``abstained``, ``probabilities``, ``model_uri``, ``model_version``.
        """
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware datetimes")
        c = predictions.c
        query = (
            select(
                c.id,
                c.created_at,
                c.title,
                c.description,
                c.tag,
                c.confidence,
                c.abstained,
                c.probabilities,
                c.model_uri,
                c.model_version,
            )
            .where(c.created_at >= since.astimezone(UTC), c.created_at < until.astimezone(UTC))
            .order_by(c.created_at, c.id)
        )
        if model_version is not None:
            query = query.where(c.model_version == model_version)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def read_trusted_feedback(self, prediction_ids: Sequence[str]) -> dict[str, str]:
        """The latest trusted label of each of these predictions (read-only).

        Trusted as retraining trusts a label (:func:`tagops.predlog.feedback.standing`): a labeller's or an
        admin's, or a client's that a reviewer accepted; labels waiting for review, rejected ones and
        every label of a revoked key are left out, so monitoring and shadow reports measure the model
        on the same labels it would learn from, and an untrusted key cannot move their F1.
        """
        from tagops.predlog.feedback import standing

        found: dict[str, str] = {}
        ids = list(prediction_ids)
        for start in range(0, len(ids), 500):  # bounded IN lists: SQLite caps bound parameters
            query = self._labelled_query().where(feedback.c.prediction_id.in_(ids[start : start + 500]))
            with self.engine.connect() as connection:
                for row in connection.execute(query):
                    labelled = dict(row._mapping)
                    if standing(labelled)[1] is not None:  # later rows win: the newest trusted label
                        found[str(labelled["prediction_id"])] = str(labelled["feedback_tag"])
        return found

    def read_answers(
        self, *, since: datetime, until: datetime, model_uris: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Answers of these models in ``[since, until)``: ``id``, ``model_uri``, ``tag``, ``latency_ms``."""
        c = predictions.c
        query = (
            select(c.id, c.model_uri, c.tag, c.latency_ms, c.request_id)
            .where(
                c.created_at >= since.astimezone(UTC),
                c.created_at < until.astimezone(UTC),
                c.model_uri.in_(list(model_uris)),
            )
            .order_by(c.created_at, c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def count_feedback(self, key_id: str, *, since: datetime) -> int:
        """Feedback rows one key sent since ``since`` (the daily cap of :mod:`tagops.serving.limits`)."""
        f = feedback.c
        query = (
            select(func.count())
            .select_from(feedback)
            .where(f.created_at >= since.astimezone(UTC), f.key_id == key_id)
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def count_rows(self, table: Table) -> int:
        """Rows in one of the log's tables (``predictions``, ``feedback``, ``shadow_predictions``)."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())

    def read_shadow_pairs(self, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Champion rows of ``[since, until)`` that the shadow also answered, side by side (read-only).

        Each row: ``prediction_id``, ``created_at``, the champion's ``tag``, ``confidence``,
        ``probabilities``, ``latency_ms``, ``model_version``, and the shadow's as ``shadow_*``.
        """
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware datetimes")
        c, s = predictions.c, shadow_predictions.c
        query = (
            select(
                c.id.label("prediction_id"),
                c.created_at,
                c.model_version,
                c.tag,
                c.confidence,
                c.probabilities,
                c.latency_ms,
                s.model_version.label("shadow_model_version"),
                s.model_uri.label("shadow_model_uri"),
                s.tag.label("shadow_tag"),
                s.confidence.label("shadow_confidence"),
                s.probabilities.label("shadow_probabilities"),
                s.latency_ms.label("shadow_latency_ms"),
            )
            .join(shadow_predictions, s.prediction_id == c.id)
            .where(c.created_at >= since.astimezone(UTC), c.created_at < until.astimezone(UTC))
            .order_by(c.created_at, c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def read_shadow_tags(self, prediction_ids: Sequence[str]) -> dict[str, str]:
        """The shadow model's tag for each of these champion predictions it answered (read-only)."""
        found: dict[str, str] = {}
        ids = list(prediction_ids)
        s = shadow_predictions.c
        for start in range(0, len(ids), 500):  # bounded IN lists: SQLite caps bound parameters
            query = select(s.prediction_id, s.tag).where(s.prediction_id.in_(ids[start : start + 500]))
            with self.engine.connect() as connection:
                found.update({str(pid): str(tag) for pid, tag in connection.execute(query)})
        return found

    def read_labelled(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Every feedback row with the prediction it labels (read-only, oldest feedback first).

        Each row: ``feedback_id``, ``feedback_at``, ``feedback_tag``, ``prediction_id``, ``predicted_at``,
        ``title``, ``description``, ``tag`` (what the model answered), ``model_version``, and who sent it:
        ``key_id``, ``key_name``, ``key_role``, ``key_revoked_at`` (``None`` where the key is unknown), and
        a reviewer's ``review`` (``accepted``, ``rejected`` or ``None``) with ``reviewer``. Feedback whose
        prediction is not in the log is left out (the API refuses it; a restored backup might not).
        ``since``/``until`` bound the feedback's time.
        """
        query = self._labelled_query()
        if since is not None:
            query = query.where(feedback.c.created_at >= since.astimezone(UTC))
        if until is not None:
            query = query.where(feedback.c.created_at < until.astimezone(UTC))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    @staticmethod
    def _labelled_query() -> Select[Any]:
        """Feedback joined with its prediction, its key and its review, oldest feedback first."""
        f, c, k, r = feedback.c, predictions.c, api_keys.c, feedback_reviews.c
        return (
            select(
                f.id.label("feedback_id"),
                f.created_at.label("feedback_at"),
                f.tag.label("feedback_tag"),
                c.id.label("prediction_id"),
                c.created_at.label("predicted_at"),
                c.title,
                c.description,
                c.tag,
                c.model_version,
                f.key_id,
                k.name.label("key_name"),
                k.role.label("key_role"),
                k.revoked_at.label("key_revoked_at"),
                r.decision.label("review"),
                r.reviewer,
            )
            .join(predictions, c.id == f.prediction_id)
            .outerjoin(api_keys, k.id == f.key_id)
            .outerjoin(feedback_reviews, r.feedback_id == f.id)
            .order_by(f.created_at, f.id)
        )
