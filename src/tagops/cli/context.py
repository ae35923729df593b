"""What every command shares: the prepared settings and the default model reference."""

from __future__ import annotations

from typing import Any

DEFAULT_MODEL_URI = "models:/tagops@champion"


def load_settings() -> Any:
    """The settings from the environment, with state folders and library environment prepared."""
    from tagops.settings import Settings, prepare_environment

    settings = Settings()
    prepare_environment(settings)
    return settings
