"""What every config shares: frozen, strict models, and the one loader from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tagops.errors import ConfigFileError

#: The largest seed: NumPy's and scikit-learn's random states take an unsigned 32-bit integer.
SEED_MAX = 2**32 - 1
#: A seed, refused when it is read rather than by a library's traceback once the work has started.
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


def _database_url(url: str) -> str:
    """A config's database URL, checked as the environment's is (``tagops.settings.check_database_url``)."""
    from tagops.settings import check_database_url  # already imported by every entry point

    return check_database_url(url)


#: A SQLAlchemy database URL, checked when a config or the environment is read (the prediction log's).
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


class FrozenModel(BaseModel):
    """Base for all configs: immutable and strict about unknown keys (typos fail loudly).

    No number of a config may be ``.nan`` or ``.inf`` (YAML's spellings) and the error says so: a NaN
    would be refused by a field's bound with a message about the bound (or taken by a field without
    one), and an infinite value survives no arithmetic on it (an age of ``.inf`` days); "no limit" is
    ``null`` where a field allows it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    #: A config that also lives as a section of a larger file (e.g. ``retrain:`` in a loop config) is read
    #: from that section when the file has one.
    yaml_section: ClassVar[str | None] = None


Config = TypeVar("Config", bound=FrozenModel)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in any error."""
    if path.is_dir():
        raise ConfigFileError(f"{path}: is a folder, not a config file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigFileError(f"{path}: cannot read config: not UTF-8 text (byte {error.start})") from error
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot read config: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{path}: cannot read config: {error}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigFileError(f"{path}: a config must be a YAML mapping, got {type(loaded).__name__}")
    return loaded


def load_config(kind: type[Config], path: Path | None = None, **overrides: Any) -> Config:
    """Load a config of ``kind`` from YAML (defaults when ``path`` is None) with top-level overrides.

    ``None`` overrides are ignored, so CLI options that were not given keep the file's values. A pydantic
    ``ValidationError`` (a ``ValueError``) names every bad field.
    """
    raw, _ = config_mapping(kind, path, **overrides)
    return kind.model_validate(raw)


def config_mapping(
    kind: type[FrozenModel], path: Path | None = None, **overrides: Any
) -> tuple[dict[str, Any], str | None]:
    """What :func:`load_config` validates, and the section of the file it was read from.

    The file's mapping (or its ``kind.yaml_section``, whose name is returned; ``None``: the whole file)
    with the overrides that are not ``None``.
    """
    raw = load_yaml(path) if path else {}
    section = kind.yaml_section if kind.yaml_section is not None and kind.yaml_section in raw else None
    if section is not None:
        raw = dict(raw[section] or {})
    raw.update({key: value for key, value in overrides.items() if value is not None})
    return raw, section
