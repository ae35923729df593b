"""What serving replicas share in the serving database besides the prediction log.

The model every replica of a deployment should serve (set by a reload, followed by the others) and each
live replica's heartbeat. These tables sit in the prediction log's database and use its engine, but only
serving reads or writes them. API keys are in the log's schema (feedback is attributed to them).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

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


class ServingState:
    """API keys' table, deployment targets and replica heartbeats of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        """Create the tables that do not exist yet (idempotent)."""
        create_log_tables(self.engine)  # the API keys' table
        metadata.create_all(self.engine)

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
