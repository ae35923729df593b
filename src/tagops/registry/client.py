"""Experiment tracking and the model registry through MLflow, for the process that drives a workload.

Embedded default: a SQLite store and a local artifact folder under ``TAGOPS_HOME``; a team points
``MLFLOW_TRACKING_URI`` at its server and nothing else changes. Registered models carry the aliases
``challenger`` (every newly trained model) and ``champion`` (only through the promotion gate).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.errors import RegistryError, first_line

# The aliases are defined with the reference grammar; importers of this module keep finding them here.
from tagops.model_ref import CHALLENGER as CHALLENGER
from tagops.model_ref import CHAMPION as CHAMPION
from tagops.model_ref import ModelRef
from tagops.registry.runs import flatten, open_run
from tagops.registry.tracking import check_tracking_server, tracking_place

if TYPE_CHECKING:
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
_MODEL_REQUIREMENTS = (
    "numpy==2.4.6",
    "pandas==3.1.1",
    "scikit-learn==1.9.1",
    "pydantic==2.12.5",
    "pydantic-settings==2.16.3",
    "PyYAML==6.0.4",
)


MODEL_SHA_TAG = "model_sha256"
#: The reference statistics a registered model's run stores for ``tagops monitor``, and the tag naming it.
REFERENCE_STATS_FILE = "reference_stats.json"
REFERENCE_STATS_TAG = "reference_stats"


def model_sha256(model_dir: Path) -> str:
    """Content hash of a saved model folder (file names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Registry:
    """Tracking runs and registering models against one MLflow backend (embedded or a team's server)."""

    def __init__(self, settings: Settings) -> None:
        """Open the tracking server or store of ``settings`` and its experiment (made if missing).

        Raises:
            RegistryError: the tracking URI cannot be used (an unknown scheme, a server that does not
                answer, a store MLflow refuses); the message names the URI and its variable.

        """
        import mlflow
        from mlflow.exceptions import MlflowException

        self.settings = settings
        self.name = settings.registered_model
        check_tracking_server(settings)
        try:
            mlflow.set_tracking_uri(settings.tracking_uri)
            mlflow.set_registry_uri(settings.tracking_uri)
            self.client = mlflow.MlflowClient(
                tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
            )
            experiment = self.client.get_experiment_by_name(settings.experiment)
            if experiment is None:
                self.experiment_id = self.client.create_experiment(
                    settings.experiment, artifact_location=settings.artifact_location
                )
            else:
                self.experiment_id = experiment.experiment_id
        except MlflowException as error:
            raise RegistryError(f"{tracking_place(settings)}: {first_line(error)}") from error

    # ----------------------------------------------------------------------------------------- runs
    @contextmanager
    def start_run(
        self,
        run_name: str,
        *,
        tags: dict[str, str] | None = None,
        nested: bool = False,
        run_id: str | None = None,
    ) -> Iterator[str]:
        """Open a run (nested under the active one if asked) and yield its id; failures mark it FAILED.

        With ``run_id``, an existing run (e.g. one opened by :meth:`create_run` before a long training
        that logged per-epoch metrics into it) is continued instead.
        """
        import mlflow

        with mlflow.start_run(
            run_id=run_id,
            experiment_id=self.experiment_id,
            run_name=None if run_id else run_name,
            tags=tags,
            nested=nested,
        ) as run:
            yield run.info.run_id

    def create_run(
        self, run_name: str, *, tags: dict[str, str] | None = None, parent_run_id: str | None = None
    ) -> str:
        """Create a run without making it active (other processes log into it by id); returns its id."""
        return open_run(
            self.settings.tracking_uri,
            self.experiment_id,
            run_name,
            tags=tags,
            parent_run_id=parent_run_id,
        )

    def log_params(self, params: dict[str, Any]) -> None:
        """Log a nested dict of parameters, flattened to dotted keys (values truncated by MLflow rules)."""
        import mlflow

        flat = {k: (json.dumps(v) if isinstance(v, list | tuple) else v) for k, v in flatten(params).items()}
        mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})

    def log_metrics(self, metrics: dict[str, Any], *, prefix: str = "", step: int | None = None) -> None:
        """Log every numeric leaf of a nested metrics dict."""
        import mlflow

        numeric = {
            f"{prefix}{k}": float(v)
            for k, v in flatten(metrics).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if numeric:
            mlflow.log_metrics(numeric, step=step)

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        """Store a JSON document as a run artifact."""
        import mlflow

        mlflow.log_dict(data, artifact_file)

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        """Upload files to the active run."""
        import mlflow

        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Tag the active run."""
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    # ------------------------------------------------------------------------------------- models
    def log_model(self, model_dir: Path, *, run_id: str, tags: dict[str, str] | None = None) -> int:
        """Log ``model_dir`` as an MLflow pyfunc model (code-based, no pickle), register it and tag it.

        Registration is idempotent: a model whose files hash to an already registered version's hash
        reuses that version (a re-run of an unchanged pipeline adds no duplicates). The version returned
        receives the ``challenger`` alias.
        """
        content = model_sha256(model_dir)
        existing = self.find_version(MODEL_SHA_TAG, content)
        if existing is not None:
            logger.info(
                "%s version %s already holds this model (sha256 %s)", self.name, existing, content[:12]
            )
            self.set_alias(CHALLENGER, existing)
            return existing
        import mlflow
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        import tagops

        signature = ModelSignature(
            inputs=Schema([ColSpec("string", "title"), ColSpec("string", "description", required=False)]),
            outputs=Schema([ColSpec("string", "tag"), ColSpec("double", "confidence")]),
        )
        code = resources.files("tagops").joinpath("_mlflow_model.py")
        with resources.as_file(code) as code_path, warnings.catch_warnings():
            # MLflow nags for an input example; giving one would load and run the model at log time.
            warnings.filterwarnings("ignore", category=UserWarning, message=r".*(input example|type hint).*")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=str(code_path),
                artifacts={MODEL_ARTIFACT: str(model_dir)},
                code_paths=[str(Path(tagops.__file__).parent)],
                pip_requirements=list(_MODEL_REQUIREMENTS),
                signature=signature,
            )
        version = self.client.create_model_version(
            name=self._ensure_registered_model(),
            source=info.model_uri,
            run_id=run_id,
            model_id=info.model_id,  # a REST server refuses a models:/m-... source without it
            tags={**(tags or {}), MODEL_SHA_TAG: content},
        )
        self.set_alias(CHALLENGER, int(version.version))
        logger.info("registered %s version %s (alias %s)", self.name, version.version, CHALLENGER)
        return int(version.version)

    def _ensure_registered_model(self) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(
                self.name,
                description="tagops: topic of a machine-learning project from title and description",
            )
        return self.name

    @property
    def shared(self) -> bool:
        """Whether the registry is a server other machines use too (not the embedded store)."""
        from urllib.parse import urlparse

        return urlparse(self.settings.tracking_uri).scheme in ("http", "https", "databricks")

    @contextmanager
    def lease(self, purpose: str, *, ttl_s: float = 900.0, timeout_s: float = 600.0) -> Iterator[None]:
        """Hold a lock that every machine using this registry honours, for the block (shared registries).

        MLflow has no conditional update, but creating a registered model is one: the server refuses a
        name that exists. The lease is a registered model named ``<model>.lease.<purpose>``, created to
        take it and deleted to give it back; its tags name the holder and when the lease expires, so a
        lease whose holder died (killed before it could delete it) is taken over after ``ttl_s``. On the
        embedded store this is a no-op: one machine, and the file lock beside the history covers it.

        Raises:
            RegistryError: another holder kept the lease for ``timeout_s``.

        """
        if not self.shared:
            yield
            return
        import socket
        import uuid

        from mlflow.exceptions import MlflowException

        name = f"{self.name}.lease.{purpose}"
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.client.create_registered_model(
                    name,
                    tags={"holder": holder, "expires_at": f"{time.time() + ttl_s:.3f}"},
                    description=f"tagops: the {purpose} lease of {self.name}; deleted when released",
                )
                break
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            self._expire_lease(name)
            if time.monotonic() > deadline:
                raise RegistryError(f"the {purpose} lease ({name}) is held by another process; try again")
            time.sleep(0.1 + random.random() * 0.2)
        try:
            yield
        finally:
            self._release_lease(name, holder)

    def _expire_lease(self, name: str) -> None:
        """Delete a lease past its expiry (its holder died); another may take it first, which is fine."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(name).tags
            if float(tags.get("expires_at", "inf")) < time.time():
                logger.warning("lease %s of %s expired; taking it over", name, tags.get("holder"))
                self.client.delete_registered_model(name)
        except MlflowException:
            pass  # released or taken over meanwhile

    def _release_lease(self, name: str, holder: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            if self.client.get_registered_model(name).tags.get("holder") == holder:
                self.client.delete_registered_model(name)
        except MlflowException as error:
            logger.warning("could not release lease %s: %s", name, error)

    def set_alias(self, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def alias_version(self, alias: str) -> int | None:
        """The version an alias points to, or ``None`` if the alias (or the model) does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException:
            return None

    def set_version_tags(self, version: int, tags: dict[str, Any]) -> None:
        """Tag a model version (gate decisions, metrics)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def version_info(self, version: int) -> dict[str, Any]:
        """Run id, tags and aliases of a version."""
        mv = self.client.get_model_version(self.name, str(version))
        return {
            "name": self.name,
            "version": int(mv.version),
            "run_id": mv.run_id,
            "tags": dict(mv.tags),
            "aliases": list(mv.aliases),
            "source": mv.source,
        }

    def find_version(self, tag: str, value: str) -> int | None:
        """The newest version whose tag ``tag`` equals ``value``."""
        return next((v["version"] for v in self.list_versions() if v["tags"].get(tag) == value), None)

    def list_versions(self) -> list[dict[str, Any]]:
        """Every registered version, newest first."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self.client.search_model_versions(f"name='{self.name}'")
        except MlflowException:
            return []
        return sorted((self.version_info(int(v.version)) for v in versions), key=lambda v: -v["version"])

    def resolve(self, uri: str | ModelRef) -> tuple[int, dict[str, Any]]:
        """Turn ``models:/name@alias`` or ``models:/name/N`` into a version number and its info."""
        ref = uri if isinstance(uri, ModelRef) else ModelRef.parse(uri)
        if not ref.in_registry:
            raise RegistryError(
                f"{uri}: not a model URI (expected models:/NAME@ALIAS or models:/NAME/VERSION)"
            )
        if ref.name != self.name:
            raise RegistryError(
                f"{uri}: unknown registered model {ref.name!r} (this project uses {self.name!r})"
            )
        if ref.alias is not None:
            version = self.alias_version(ref.alias)
            if version is None:
                raise RegistryError(f"{uri}: no version has the alias {ref.alias!r}; train and promote first")
        else:
            assert ref.version is not None  # a registry reference names an alias or a version
            version = ref.version
        try:
            return version, self.version_info(version)
        except Exception as error:  # MLflow raises its own exception types for a missing version
            raise RegistryError(f"{uri}: version {version} not found") from error

    def load_run_dict(self, run_id: str, artifact_file: str) -> dict[str, Any]:
        """A JSON artifact of a run (e.g. ``reference_stats.json``); a missing one is a RegistryError."""
        import mlflow

        try:
            loaded = mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact_file}")
        except Exception as error:  # MLflow raises its own types for a missing artifact or run
            raise RegistryError(f"run {run_id}: no artifact {artifact_file!r} ({error})") from error
        if not isinstance(loaded, dict):
            raise RegistryError(f"run {run_id}: {artifact_file!r} is not a JSON object")
        return loaded

    def log_monitoring(
        self,
        *,
        run_name: str,
        metrics: dict[str, Any],
        params: dict[str, Any],
        tags: dict[str, str],
        files: list[Path],
    ) -> str:
        """Record one monitoring window as its own run (metrics, parameters, report files); returns its id.

        A run per window, tagged with the model version, so MLflow charts a model's drift over time.
        """
        with self.start_run(run_name, tags={"tagops.kind": "monitor", **tags}) as run_id:
            self.log_params(params)
            self.log_metrics(metrics)
            self.log_artifacts(files, artifact_path="monitoring")
        return run_id

    def download(self, version: int) -> Path:
        """The local folder of a version's tagops model, downloaded once into the cache and verified.

        The folder's content hash must equal the ``model_sha256`` the version was registered with, on
        download and on every cache hit: a mismatch (a corrupted cache, a tampered artifact store) is
        refused with :class:`RegistryError`, and a corrupted cache entry is downloaded again once.
        Each process downloads into a staging folder of its own and renames it into place, so
        concurrent downloads of one version never see each other's partial files.
        """
        target = self.settings.models_dir / "registry" / self.name / str(version)
        model_dir = target / MODEL_ARTIFACT
        registered = self.client.get_model_version(self.name, str(version))
        expected = registered.tags.get(MODEL_SHA_TAG)

        def verified(folder: Path) -> bool:
            return expected is None or model_sha256(folder) == expected

        if (model_dir / "model.json").is_file():
            if verified(model_dir):
                return model_dir
            logger.warning("%s: cached model does not match its sha256; downloading it again", model_dir)
            shutil.rmtree(target, ignore_errors=True)
        staged = self._download_staged(version, str(registered.source), target)
        try:
            if not verified(staged / MODEL_ARTIFACT):
                ref = ModelRef.registered(self.name, version)
                actual = model_sha256(staged / MODEL_ARTIFACT)
                raise RegistryError(
                    f"{ref}: downloaded model's sha256 {actual[:12]}… is not the registered "
                    f"{(expected or '')[:12]}… (tag {MODEL_SHA_TAG}); refusing to load it"
                )
            if target.exists() and not (model_dir / "model.json").is_file():
                shutil.rmtree(target, ignore_errors=True)  # an incomplete folder of an older layout
            try:
                staged.rename(target)
            except OSError:  # another process put it there first: use theirs if it is whole and verified
                if not (model_dir / "model.json").is_file():
                    raise
                if not verified(model_dir):
                    raise RegistryError(f"{model_dir}: model does not match its sha256") from None
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return model_dir

    def _download_staged(self, version: int, source: str, target: Path) -> Path:
        """Download a version's artifact (``source``) into a staging folder of this process.

        Returns the staging folder; the model is its ``model`` subfolder.
        """
        import mlflow

        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=target.parent))
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staged / "download"))
            )
            # pyfunc layout: <model>/artifacts/<folder>/model.json (the folder keeps its logged name)
            found = next((p.parent for p in sorted(local.glob("artifacts/*/model.json"))), None)
            if found is None:
                ref = ModelRef.registered(self.name, version)
                raise RegistryError(f"{ref}: artifact has no tagops model folder")
            shutil.move(str(found), str(staged / MODEL_ARTIFACT))
            shutil.rmtree(staged / "download", ignore_errors=True)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return staged
