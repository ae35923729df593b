"""API keys: created once, shown once, stored only as a salted scrypt digest in the serving database.

A key reads ``tagops_<key id>_<secret>``; the id finds the row, the secret is checked against the digest
in constant time. Roles (:data:`~tagops.predlog.schema.ROLES`): ``client`` (predict and feedback, which
waits for review), ``labeller`` (feedback trusted for training) and ``admin`` (also reload). ``tagops keys
create|list|revoke`` manage them; a revoked key stops working within ``key_cache_ttl_s``, and its
feedback leaves the next training data.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine

from tagops.errors import TagopsError
from tagops.predlog.schema import ROLES, TRUSTED_ROLES, Role, api_keys, utcnow
from tagops.serving.state import ServingState

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.settings import Settings

__all__ = ["ROLES", "ApiKey", "ApiKeyError", "KeyStore", "Role"]
KEY_PREFIX = "tagops"
_TOKEN = re.compile(rf"^{KEY_PREFIX}_(?P<id>[0-9a-f]{{12}})_(?P<secret>[A-Za-z0-9_-]{{43}})$")
#: scrypt cost: 16 MiB and tens of milliseconds of CPU per check, so guessing is slow; verified keys
#: are cached (see KeyStore).
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024**2}


class ApiKeyError(TagopsError):
    """An API key operation named a key that does not exist or used a bad value."""


@dataclass(frozen=True)
class ApiKey:
    """What is stored about a key (never the secret)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def allows(self, role: Role) -> bool:
        """Whether this key may do what ``role`` may do (a role may do what the roles below it may)."""
        return self.active and self.role in ROLES and ROLES.index(self.role) >= ROLES.index(role)

    @property
    def trusted(self) -> bool:
        """Whether its feedback enters training without a review."""
        return self.role in TRUSTED_ROLES


def digest_secret(secret: str, salt: bytes) -> str:
    """The scrypt digest of a key's secret, hex-encoded."""
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()  # type: ignore[arg-type]


class KeyStore:
    """Create, list, revoke and verify keys in the serving database."""

    def __init__(self, engine: Engine, *, cache_ttl_s: float = 5.0) -> None:
        self.engine = engine
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[bytes, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: ServeConfig | None, settings: Settings) -> KeyStore:
        """The keys in the database of ``cfg``'s prediction log (their table is created if missing)."""
        from tagops.predlog.log import PredictionLog

        engine = PredictionLog.from_config(cfg, settings, journal=False).engine
        ServingState(engine).create_tables()
        return cls(engine)

    def create(self, name: str, role: Role = "client") -> tuple[ApiKey, str]:
        """Create a key; returns its record and the key itself (shown once, never stored)."""
        if role not in ROLES:
            raise ApiKeyError(f"role must be one of {list(ROLES)}, got {role!r}")
        name = name.strip()
        if not name or len(name) > 200:
            raise ApiKeyError("a key needs a name of 1 to 200 characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = ApiKey(key_id=key_id, name=name, role=role, created_at=utcnow(), revoked_at=None)
        with self.engine.begin() as connection:
            connection.execute(
                api_keys.insert().values(
                    id=key_id,
                    name=name,
                    role=role,
                    salt=salt.hex(),
                    digest=digest_secret(secret, salt),
                    created_at=record.created_at,
                    revoked_at=None,
                )
            )
        return record, f"{KEY_PREFIX}_{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        query = select(
            api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.created_at, api_keys.c.revoked_at
        ).order_by(api_keys.c.created_at)
        with self.engine.connect() as connection:
            return [ApiKey(*row) for row in connection.execute(query)]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); unknown ids are an error."""
        with self.engine.begin() as connection:
            row = connection.execute(select(api_keys.c.revoked_at).where(api_keys.c.id == key_id)).first()
            if row is None:
                raise ApiKeyError(f"no API key with id {key_id!r} (see `tagops keys list`)")
            if row[0] is None:
                connection.execute(
                    api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=utcnow())
                )
        with self._lock:
            self._cache.clear()
        return next(k for k in self.list() if k.key_id == key_id)

    def verify(self, token: str) -> ApiKey | None:
        """The active key ``token`` is, or ``None``; results are cached for ``cache_ttl_s``."""
        fingerprint = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(fingerprint)
        if cached is not None and now - cached[0] < self.cache_ttl_s:
            return cached[1]
        key = self._verify(token)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: random tokens must not grow it without limit
                self._cache.clear()
            self._cache[fingerprint] = (now, key)
        return key

    def _verify(self, token: str) -> ApiKey | None:
        match = _TOKEN.match(token)
        if match is None:
            return None
        query = select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.role,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
            api_keys.c.salt,
            api_keys.c.digest,
        ).where(api_keys.c.id == match["id"])
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row.revoked_at is not None:
            return None
        expected = digest_secret(match["secret"], bytes.fromhex(row.salt))
        if not hmac.compare_digest(expected, row.digest):
            return None
        return ApiKey(row.id, row.name, row.role, row.created_at, row.revoked_at)
