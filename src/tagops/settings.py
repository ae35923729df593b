"""Runtime settings: where state lives, which servers to talk to, and the secrets that never go in YAML.

One :class:`Settings` is read from the environment at the edge (the CLI, a ZenML step, a Ray Serve
replica, a test fixture) and passed down. Every path is derived from ``TAGOPS_HOME``; nothing is created
until :func:`prepare_environment` is called by that entry point. Sections group what one part of the
system reads: :attr:`Settings.serve` (``TAGOPS_SERVE_*``) and :attr:`Settings.retrain`
(``TAGOPS_RETRAIN_*``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from tagops.errors import DataError, TagopsError

DEFAULT_DATA_URL = "https://raw.githubusercontent.com/GokuMohandas/Made-With-ML/main/datasets"


class ServeSettings(BaseSettings):
    """``TAGOPS_SERVE_*``: the prediction log's database URL (it may hold a password, so never from YAML)."""

    model_config = SettingsConfigDict(env_prefix="TAGOPS_SERVE_", frozen=True, extra="ignore")

    #: Wins over a config's ``database_url``; ``None``: the config's, else SQLite under ``TAGOPS_HOME``.
    database_url: str | None = Field(default=None, repr=False)

    @field_validator("database_url")
    @classmethod
    def _parseable(cls, url: str | None) -> str | None:
        return None if url is None else check_database_url(url)


class RetrainSettings(BaseSettings):
    """``TAGOPS_RETRAIN_*``: the service a retrain reloads, and the admin key that may (never in YAML)."""

    model_config = SettingsConfigDict(env_prefix="TAGOPS_RETRAIN_", frozen=True, extra="ignore")

    #: Wins over a retrain config's ``service_url``.
    service_url: str | None = None
    admin_key: str | None = Field(default=None, repr=False)


class Settings(BaseSettings):
    """Environment-driven settings (prefix ``TAGOPS_``); frozen so they can be passed around safely."""

    model_config = SettingsConfigDict(env_prefix="TAGOPS_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / ".tagops")
    data_mirror: Path | None = None
    data_url: str = DEFAULT_DATA_URL
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("TAGOPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
    )
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("TAGOPS_RAY_ADDRESS", "RAY_ADDRESS")
    )
    registered_model: str = Field(default="tagops", min_length=1)
    experiment: str = Field(default="tagops", min_length=1)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        try:
            return value.expanduser().resolve()
        except RuntimeError as error:  # "~user/..." for a user this system does not know
            raise ValueError(f"cannot expand '~' in {str(value)!r}: {error}") from None

    @field_validator("data_mirror", mode="before")
    @classmethod
    def _empty_mirror_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @property
    def data_dir(self) -> Path:
        """Immutable raw data pulled and verified by ``tagops data pull``."""
        return self.home / "data" / "raw"

    @property
    def mlflow_dir(self) -> Path:
        """Embedded MLflow state (SQLite DB and artifacts)."""
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: the team's server when set, else the embedded SQLite store."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def tracking_uri_variable(self) -> str | None:
        """The environment variable the tracking URI came from (``None``: the embedded default)."""
        return _set_by("MLFLOW_TRACKING_URI") if self.mlflow_tracking_uri else None

    @property
    def ray_address_variable(self) -> str | None:
        """The environment variable the Ray address came from (``None``: the embedded cluster)."""
        return _set_by("RAY_ADDRESS") if self.ray_address else None

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments; ``None`` lets a remote server decide."""
        if self.mlflow_tracking_uri:
            return None
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def zenml_dir(self) -> Path:
        """ZenML global config and local stack (store + artifact store)."""
        return self.home / "zenml"

    @property
    def ray_temp_dir(self) -> Path:
        """Ray session files for the embedded cluster."""
        return self.home / "ray"

    @property
    def reports_dir(self) -> Path:
        """Evaluation and exploration reports."""
        return self.home / "reports"

    @property
    def models_dir(self) -> Path:
        """Local cache of model artifacts downloaded from the registry, and locally trained models."""
        return self.home / "models"

    @property
    def promotion_history(self) -> Path:
        """Append-only JSON-lines history of gate decisions, promotions and rollbacks."""
        return self.home / "registry" / "promotion_history.jsonl"


def read_settings() -> Settings:
    """The settings from the environment; a variable that cannot be used is a :class:`TagopsError`.

    The error names each variable as it is spelt in the environment and what is wrong with its value,
    one per line, instead of pydantic's report.
    """
    try:
        return Settings()
    except ValidationError as error:
        # A section's own variables fail inside its default factory, located within the section.
        section = {"ServeSettings": "serve.", "RetrainSettings": "retrain."}.get(error.title, "")
        lines = []
        for problem in error.errors():
            field = section + ".".join(str(part) for part in problem["loc"])
            message = str(problem["msg"]).removeprefix("Value error, ")
            lines.append(f"{_variable(field)}: {message}")
        raise TagopsError("\n".join(lines)) from None
    except SettingsError as error:  # a section (TAGOPS_SERVE, TAGOPS_RETRAIN) set as a whole, not as JSON
        field = str(error).split('"')[1] if '"' in str(error) else "?"
        raise TagopsError(
            f"{_variable(field)}: not a JSON object; set the section's variables one by one "
            f"({_variable(field)}_...)"
        ) from None


def _set_by(name: str) -> str:
    """Which of ``TAGOPS_<name>`` and ``<name>`` set a value read under both (the first wins, as read)."""
    return f"TAGOPS_{name}" if os.environ.get(f"TAGOPS_{name}") else name


def _variable(field: str) -> str:
    """The environment variable of a settings field (``mlflow_tracking_uri``: TAGOPS_MLFLOW_TRACKING_URI)."""
    return "TAGOPS_" + field.replace(".", "_").upper()


def check_database_url(url: str) -> str:
    """``url`` if SQLAlchemy can parse it; the error never quotes it, since a URL may hold a password."""
    from sqlalchemy.engine import make_url  # only where a URL is set: most commands never read one
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise ValueError(
            "not a database URL (expected e.g. postgresql://user@host/db or sqlite:///path)"
        ) from None
    return url


def masked_uri(uri: str) -> str:
    """``uri`` with any password in it replaced by ``***``, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


#: Environment that keeps every library quiet, offline-friendly and local.
QUIET_ENVIRONMENT: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # stdout carries our JSON results; MLflow would print "View run at <url>" into it on a tracking server.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "DO_NOT_TRACK": "1",
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "ZENML_LOGGING_VERBOSITY": "WARN",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}


def prepare_environment(settings: Settings) -> None:
    """Create the state folders and set the environment the libraries read at import time.

    Called once by an entry point, before mlflow, zenml or ray are imported. Values the user already
    exported win (``setdefault``), so a team can turn the Hugging Face hub back on, for example.
    """
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("ZENML_CONFIG_PATH", str(settings.zenml_dir))
    # ZenML's local store keeps its SQLite DB and artifact store under its config path.
    make_state_folders(settings)


def make_state_folders(settings: Settings) -> None:
    """Create the state folders under ``TAGOPS_HOME``, or say why they cannot be, naming the variable.

    Raises:
        TagopsError: a folder cannot be made, or no file can be written in the home (a read-only mount
            passes ``mkdir`` on folders that exist, so a file is made and removed there).

    """
    from tagops.outputs import check_output_folder

    where = f"TAGOPS_HOME {settings.home}"
    for path in (
        settings.data_dir,
        settings.mlflow_dir,
        settings.zenml_dir,
        settings.reports_dir,
        settings.models_dir,
        settings.promotion_history.parent,
    ):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TagopsError(f"{where}: cannot create {path} ({error.strerror or error})") from error
    try:
        check_output_folder(settings.home)
    except DataError as error:
        raise TagopsError(f"{where}: {error.violations[0].message}") from error
