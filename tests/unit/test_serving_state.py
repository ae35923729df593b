"""What serving keeps beside the prediction log: API keys, model targets, heartbeats, the model cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tagops.predlog.schema import api_keys
from tagops.serving.keys import ApiKeyError, KeyStore
from tagops.serving.state import ServingState
from tests.unit.serving_fakes import make_store, settings_for

pytestmark = pytest.mark.unit


def test_replica_targets_and_heartbeats(tmp_path: Path) -> None:
    state = ServingState(make_store(tmp_path).engine)
    state.create_tables()
    assert state.claim_target("d", "models:/tagops/1", 1) == ("models:/tagops/1", 1)
    assert state.claim_target("d", "models:/tagops/5", 5) == ("models:/tagops/1", 1)  # first claim wins
    state.set_target("d", "models:/tagops/2", 2)
    assert state.get_target("d") == ("models:/tagops/2", 2)
    state.heartbeat("r1", "d", "models:/tagops/2", 2)
    state.heartbeat("r2", "d", "models:/tagops/1", 1)
    state.heartbeat("r3", "other", "models:/tagops/1", 1)
    assert sorted(r.replica_id for r in state.live_replicas("d", 10)) == ["r1", "r2"]
    state.remove_replica("r2")
    assert [r.model_version for r in state.live_replicas("d", 10)] == [2]
    assert state.live_replicas("d", -1) == []  # stale


# ---------------------------------------------------------------------------------------------- keys
def test_keys_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    ServingState(store.engine).create_tables()
    keys = KeyStore(store.engine, cache_ttl_s=0)
    record, token = keys.create("ci", "client")
    assert token.startswith(f"tagops_{record.key_id}_")
    with store.engine.connect() as connection:
        stored = connection.execute(select(api_keys)).one()
    secret = token.split("_", 2)[2]
    assert secret not in str(tuple(stored)) and token not in str(tuple(stored))
    assert len(stored.salt) == 32 and len(stored.digest) == 64
    assert keys.verify(token) == record
    assert keys.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert keys.verify("tagops_000000000000_" + "x" * 43) is None
    assert keys.verify("not a key") is None
    assert record.allows("client") and not record.allows("admin")
    admin, admin_token = keys.create("ops", "admin")
    assert admin.allows("client") and admin.allows("admin")
    assert [k.name for k in keys.list()] == ["ci", "ops"]
    keys.revoke(record.key_id)
    assert keys.verify(token) is None
    assert keys.verify(admin_token) is not None
    with pytest.raises(ApiKeyError, match="no API key"):
        keys.revoke("nope")
    with pytest.raises(ApiKeyError, match="role"):
        keys.create("x", "root")  # type: ignore[arg-type]
    with pytest.raises(ApiKeyError, match="name"):
        keys.create("  ", "client")


def test_verified_keys_are_cached_until_the_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path)
    ServingState(store.engine).create_tables()
    keys = KeyStore(store.engine, cache_ttl_s=60)
    _, token = keys.create("ci")
    assert keys.verify(token) is not None
    calls = []
    monkeypatch.setattr("tagops.serving.keys.digest_secret", lambda *a: calls.append(a) or "")
    assert keys.verify(token) is not None  # from the cache: no scrypt
    assert calls == []


# ----------------------------------------------------------------------------------- model cache
def test_registry_versions_load_from_the_local_cache_without_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tagops.config import RulesParams
    from tagops.data.clean import build_text
    from tagops.inference.predictor import Predictor
    from tagops.models.rules import RulesModel
    from tagops.serving.loader import SERVING_METADATA, RegistryModelLoader
    from tests.unit.conftest import make_projects

    settings = settings_for(tmp_path)
    folder = settings.models_dir / "registry" / "tagops" / "3" / "model"
    frame = make_projects(8)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    RulesModel(RulesParams(min_term_count=2)).fit(texts, frame.tag.tolist()).save(folder)
    metadata = {"name": "tagops", "version": 3, "run_id": "r3", "holdout_metrics": {"overall.f1": 0.9}}
    calls: list[str] = []

    def from_registry(uri: str, _settings: object, *, threshold: float | None) -> Predictor:
        calls.append(uri)
        return Predictor.from_directory(folder, threshold=threshold, metadata=dict(metadata))

    monkeypatch.setattr("tagops.inference.loading.load_predictor", from_registry)
    monkeypatch.setattr(RegistryModelLoader, "_holdout_metrics", lambda self, run_id: {"overall.f1": 0.9})
    resolved: list[str] = []

    def resolve(self: RegistryModelLoader, uri: str) -> str:  # the one registry query an alias costs
        resolved.append(uri)
        return uri.replace("@champion", "/3")

    monkeypatch.setattr(RegistryModelLoader, "resolve", resolve)
    loader = RegistryModelLoader(settings, threshold=0.4)
    assert loader.prefetch("models:/tagops@champion")[0] == "models:/tagops/3"
    assert calls == ["models:/tagops/3"]  # not cached yet: loaded (downloaded) once
    assert (folder.parent / SERVING_METADATA).is_file()
    assert loader.prefetch("models:/tagops@champion") == ("models:/tagops/3", {"family": "rules"})
    first = loader.load("models:/tagops@champion")
    assert calls == ["models:/tagops/3"]  # the alias resolved, then from the cache
    assert resolved == ["models:/tagops@champion"] * 3
    again = loader.load("models:/tagops/3")
    assert calls == ["models:/tagops/3"]  # from the cache
    assert again.metadata["run_id"] == "r3" and again.metadata["holdout_metrics"] == {"overall.f1": 0.9}
    assert again.metadata["uri"] == "models:/tagops/3"
    assert again.predict(["image segmentation"], [""]) == first.predict(["image segmentation"], [""])
    assert loader.load("models:/tagops/4") is not None and calls[-1] == "models:/tagops/4"  # not cached
