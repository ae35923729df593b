"""Loading served models from the registry or a folder, cached per host under ``TAGOPS_HOME/models``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.model_ref import ModelRef

if TYPE_CHECKING:
    from tagops.serving.model import PredictorLike
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: Provenance of a cached registry version, written beside its model folder.
SERVING_METADATA = "serving-metadata.json"


@contextlib.contextmanager
def _host_lock(path: Path) -> Iterator[None]:
    """Serialise model downloads of the replicas on one host (they share the model cache)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, downloads may race
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RegistryModelLoader:
    """Loads ``models:/`` URIs (or model folders) with their holdout metrics from the MLflow run."""

    def __init__(self, settings: Settings, *, threshold: float | None) -> None:
        self.settings = settings
        self.threshold = threshold

    def resolve(self, uri: str) -> str:
        """``models:/NAME@ALIAS`` → ``models:/NAME/VERSION`` (one registry query); other URIs as they are."""
        ref = ModelRef.parse(uri)
        if not ref.in_registry:
            return uri
        if ref.alias is not None and ref.name == self.settings.registered_model:
            from tagops.registry.aliases import alias_version

            version = alias_version(self.settings.tracking_uri, ref.name, ref.alias)  # without MLflow
            if version is not None:
                return str(ModelRef.registered(ref.name, version))
        from tagops.registry.client import Registry

        version, info = Registry(self.settings).resolve(ref)
        return str(ModelRef.registered(info["name"], version))

    def load(self, uri: str) -> PredictorLike:
        """Resolve, download (once per host) and load the model ``uri`` names.

        A registry version is immutable, so once loaded here its folder and provenance are cached under
        ``TAGOPS_HOME/models``: a restarted replica, or one following a reload, loads ``models:/NAME/N``
        from that cache without importing MLflow (seconds saved on every replica start). A transformer's
        traced network is cached there too (``models/traced``, :mod:`tagops.models.trace_cache`), so a
        restart does not import transformers' modelling code either.
        """
        from tagops.inference.loading import load_predictor
        from tagops.models.trace_cache import traced_networks_in

        if ModelRef.parse(uri).alias is not None:  # one registry query, then most likely the cache
            uri = self.resolve(uri)
        with traced_networks_in(self.settings.models_dir / "traced"):
            cached = self._from_cache(uri)
            if cached is not None:
                return cached
            with _host_lock(self.settings.models_dir / ".serving-download.lock"):
                predictor = load_predictor(uri, self.settings, threshold=self.threshold)
        predictor.metadata["holdout_metrics"] = self._holdout_metrics(predictor.metadata.get("run_id"))
        self._write_cache(predictor)
        return predictor

    def prefetch(self, uri: str) -> tuple[str, dict[str, Any]]:
        """Make sure the model ``uri`` names is in this host's cache, without loading it if it is.

        Returns the URI naming exactly that model and what the model is made of (``family`` and, for an
        ensemble, ``members``: the families :mod:`tagops.serving.profile` chooses settings by). A model
        that is not cached yet is loaded once (downloaded, verified, cached); a model that cannot be
        loaded fails here.
        """
        from tagops.models import read_model_info

        concrete = self.resolve(uri) if ModelRef.parse(uri).alias is not None else uri
        ref = ModelRef.parse(concrete)
        if ref.folder is not None:
            folder, ready = Path(ref.folder), True
        else:
            entry = self._cache_dir(str(ref.name), str(ref.version))
            folder, ready = entry / "model", (entry / SERVING_METADATA).is_file()
        if not (ready and (folder / "model.json").is_file()):
            predictor = self.load(concrete)
            from tagops.serving.model import concrete_uri

            return concrete_uri(predictor, uri), predictor.describe()
        info = read_model_info(folder)
        members = [str(read_model_info(folder / name)["family"]) for name in info.get("members", [])]
        return concrete, {"family": info["family"], **({"members": members} if members else {})}

    def _cache_dir(self, name: str, version: int | str) -> Path:
        # The folder Registry.download fills: <models>/registry/<name>/<version>/model
        return self.settings.models_dir / "registry" / name / str(version)

    def _from_cache(self, uri: str) -> PredictorLike | None:
        from tagops.inference.predictor import Predictor

        ref = ModelRef.parse(uri)
        if ref.name is None or ref.version is None:
            return None
        folder = self._cache_dir(ref.name, ref.version)
        provenance = folder / SERVING_METADATA
        if not (folder / "model" / "model.json").is_file() or not provenance.is_file():
            return None
        try:
            metadata = json.loads(provenance.read_text(encoding="utf-8"))
            return Predictor.from_directory(folder / "model", threshold=self.threshold, metadata=metadata)
        except Exception as error:  # a damaged cache entry: load from the registry instead
            logger.warning("ignoring the cached %s: %s", uri, error)
            return None

    def _write_cache(self, predictor: PredictorLike) -> None:
        meta = predictor.metadata
        if not meta.get("name") or meta.get("version") is None:
            return
        folder = self._cache_dir(str(meta["name"]), meta["version"])
        if not (folder / "model" / "model.json").is_file():
            return
        record = {k: v for k, v in meta.items() if k != "path"}
        record["uri"] = str(ModelRef.registered(meta["name"], meta["version"]))
        partial = folder / f".{SERVING_METADATA}.{os.getpid()}"
        partial.write_text(json.dumps(record, default=str), encoding="utf-8")
        partial.replace(folder / SERVING_METADATA)

    def _holdout_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        try:
            from tagops.registry.client import Registry

            metrics = Registry(self.settings).client.get_run(run_id).data.metrics
        except Exception as error:  # metrics are informative; the model is served without them
            logger.warning("could not read the holdout metrics of run %s: %s", run_id, error)
            return {}
        return {k.removeprefix("holdout."): float(v) for k, v in metrics.items() if k.startswith("holdout.")}
