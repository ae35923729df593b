"""What every command shares: the settings, read once from the environment and prepared."""

from __future__ import annotations

import logging
from typing import Any

from tagops.cli import logs

logger = logging.getLogger("tagops.cli")


def load_settings(*, announce_log: bool = False) -> Any:
    """The settings from the environment, with state folders, library environment and log file prepared.

    Args:
        announce_log: Say on the console where the log file is (for commands that run for a while;
            quick commands keep their stderr to errors only).

    """
    from tagops.settings import Settings, prepare_environment

    settings = Settings()
    prepare_environment(settings)
    path = logs.start_log_file(settings.home)
    if announce_log:
        logger.info("full log: %s", path)
    return settings
