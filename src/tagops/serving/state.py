"""What serving replicas share in the serving database besides the prediction log.

The model every replica of a deployment should serve (set by a reload, followed by the others), the
deployment's canary rollout (the challenger, its share of traffic and each side's answered and failed
requests) and each live replica's heartbeat. These tables sit in the prediction log's database and use
its engine, but only serving writes them. API keys are in the log's schema (feedback is attributed to
them).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from tagops.predlog.schema import UTCDateTime, utcnow
from tagops.predlog.schema import create_tables as create_log_tables

metadata = MetaData()

#: The model every replica of one deployment should serve (set by a reload, followed by the others).
model_targets = Table(
    "serving_model_targets",
    metadata,
    Column("deployment_id", String(64), primary_key=True),
    Column("model_uri", String(1000), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("updated_at", Float, nullable=False),
)

#: A deployment's canary rollout: the challenger that answers ``weight`` % of requests, and the
#: requests each side answered and failed (every replica adds its own at each sync). One row per
#: deployment; a new rollout replaces the last one's row.
rollouts = Table(
    "serving_rollouts",
    metadata,
    Column("deployment_id", String(64), primary_key=True),
    Column("model_uri", String(1000), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("champion_uri", String(1000), nullable=False),
    Column("champion_version", Integer, nullable=True),
    Column("weight", Float, nullable=False),
    #: ``active``, ``promoted`` or ``aborted``.
    Column("state", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("reason", Text, nullable=True),
    Column("champion_answered", Integer, nullable=False),
    Column("champion_failed", Integer, nullable=False),
    Column("canary_answered", Integer, nullable=False),
    Column("canary_failed", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: What each live replica serves, refreshed every ``sync_interval_s``.
replicas = Table(
    "serving_replicas",
    metadata,
    Column("replica_id", String(64), primary_key=True),
    Column("deployment_id", String(64), nullable=False, index=True),
    Column("model_uri", String(1000), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("pid", Integer, nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)


@dataclass(frozen=True)
class ReplicaRecord:
    """One replica's last report."""

    replica_id: str
    model_uri: str
    model_version: int | None
    pid: int
    hostname: str
    heartbeat_at: float


@dataclass(frozen=True)
class RolloutRecord:
    """A deployment's canary rollout as stored."""

    deployment_id: str
    model_uri: str
    model_version: int | None
    champion_uri: str
    champion_version: int | None
    weight: float
    state: str
    started_at: datetime
    ended_at: datetime | None
    reason: str | None
    champion_answered: int
    champion_failed: int
    canary_answered: int
    canary_failed: int

    @property
    def active(self) -> bool:
        """The canary takes traffic."""
        return self.state == "active"


class ServingState:
    """API keys' table, deployment targets and replica heartbeats of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        """Create the tables that do not exist yet (idempotent)."""
        create_log_tables(self.engine)  # the migrations create serving's tables too

    def claim_target(self, deployment_id: str, model_uri: str, version: int | None) -> tuple[str, int | None]:
        """Set the deployment's model if none is set yet; return the one in force."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    model_targets.insert().values(
                        deployment_id=deployment_id,
                        model_uri=model_uri,
                        model_version=version,
                        updated_at=time.time(),
                    )
                )
        except IntegrityError:
            pass
        target = self.get_target(deployment_id)
        return target if target is not None else (model_uri, version)

    def get_target(self, deployment_id: str) -> tuple[str, int | None] | None:
        """The model the deployment's replicas should serve, if one was set."""
        query = select(model_targets.c.model_uri, model_targets.c.model_version).where(
            model_targets.c.deployment_id == deployment_id
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (str(row[0]), row[1])

    def set_target(self, deployment_id: str, model_uri: str, version: int | None) -> None:
        """Point every replica of the deployment at this model."""
        values = {"model_uri": model_uri, "model_version": version, "updated_at": time.time()}
        with self.engine.begin() as connection:
            updated = connection.execute(
                model_targets.update().where(model_targets.c.deployment_id == deployment_id).values(**values)
            ).rowcount
            if not updated:
                connection.execute(model_targets.insert().values(deployment_id=deployment_id, **values))

    # ------------------------------------------------------------------------------------- rollouts
    def start_rollout(
        self,
        deployment_id: str,
        *,
        model_uri: str,
        version: int | None,
        champion_uri: str,
        champion_version: int | None,
        weight: float,
    ) -> RolloutRecord:
        """Start a rollout (replacing the deployment's last one, counts from zero)."""
        values = {
            "model_uri": model_uri,
            "model_version": version,
            "champion_uri": champion_uri,
            "champion_version": champion_version,
            "weight": weight,
            "state": "active",
            "started_at": utcnow(),
            "ended_at": None,
            "reason": None,
            "champion_answered": 0,
            "champion_failed": 0,
            "canary_answered": 0,
            "canary_failed": 0,
            "updated_at": time.time(),
        }
        with self.engine.begin() as connection:
            connection.execute(rollouts.delete().where(rollouts.c.deployment_id == deployment_id))
            connection.execute(rollouts.insert().values(deployment_id=deployment_id, **values))
        record = self.get_rollout(deployment_id)
        assert record is not None
        return record

    def set_rollout_weight(self, deployment_id: str, weight: float) -> None:
        """Change the share of an active rollout."""
        with self.engine.begin() as connection:
            connection.execute(
                rollouts.update()
                .where(rollouts.c.deployment_id == deployment_id, rollouts.c.state == "active")
                .values(weight=weight, updated_at=time.time())
            )

    def end_rollout(self, deployment_id: str, state: str, reason: str) -> RolloutRecord | None:
        """Mark the deployment's active rollout ``promoted`` or ``aborted``; returns it (``None``: none)."""
        with self.engine.begin() as connection:
            connection.execute(
                rollouts.update()
                .where(rollouts.c.deployment_id == deployment_id, rollouts.c.state == "active")
                .values(state=state, ended_at=utcnow(), reason=reason, updated_at=time.time())
            )
        return self.get_rollout(deployment_id)

    def add_rollout_counts(self, deployment_id: str, counts: dict[str, int]) -> None:
        """Add one replica's answered and failed requests per side (``champion_answered``, ...)."""
        if not any(counts.values()):
            return
        c = rollouts.c
        increments = {name: getattr(c, name) + count for name, count in counts.items() if count}
        with self.engine.begin() as connection:
            connection.execute(rollouts.update().where(c.deployment_id == deployment_id).values(**increments))

    def get_rollout(self, deployment_id: str) -> RolloutRecord | None:
        """The deployment's rollout (active or the last one ended), if it ever had one."""
        rows = self._rollouts(rollouts.c.deployment_id == deployment_id)
        return rows[0] if rows else None

    def latest_rollout(self) -> RolloutRecord | None:
        """The most recently started rollout of any deployment in this database."""
        rows = self._rollouts(None)
        return max(rows, key=lambda r: r.started_at) if rows else None

    def _rollouts(self, where: object) -> list[RolloutRecord]:
        query = select(*(getattr(rollouts.c, name) for name in RolloutRecord.__dataclass_fields__))
        if where is not None:
            query = query.where(where)  # type: ignore[arg-type]
        with self.engine.connect() as connection:
            return [RolloutRecord(*row) for row in connection.execute(query)]

    def heartbeat(self, replica_id: str, deployment_id: str, model_uri: str, version: int | None) -> None:
        """Record that this replica is alive and which model it serves."""
        values = {
            "deployment_id": deployment_id,
            "model_uri": model_uri,
            "model_version": version,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "heartbeat_at": time.time(),
        }
        with self.engine.begin() as connection:
            updated = connection.execute(
                replicas.update().where(replicas.c.replica_id == replica_id).values(**values)
            ).rowcount
            if not updated:
                connection.execute(replicas.insert().values(replica_id=replica_id, **values))

    def live_replicas(self, deployment_id: str | None, max_age_s: float) -> list[ReplicaRecord]:
        """Replicas of the deployment (of any, for ``None``) that reported within ``max_age_s``."""
        query = select(
            replicas.c.replica_id,
            replicas.c.model_uri,
            replicas.c.model_version,
            replicas.c.pid,
            replicas.c.hostname,
            replicas.c.heartbeat_at,
        ).where(replicas.c.heartbeat_at >= time.time() - max_age_s)
        if deployment_id is not None:
            query = query.where(replicas.c.deployment_id == deployment_id)
        with self.engine.connect() as connection:
            return [ReplicaRecord(*row) for row in connection.execute(query)]

    def remove_replica(self, replica_id: str) -> None:
        """Forget a replica that shuts down cleanly."""
        with self.engine.begin() as connection:
            connection.execute(replicas.delete().where(replicas.c.replica_id == replica_id))
