"""Secrets in configs (webhook and database URLs) never become ZenML step parameters, which ZenML stores."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tagops.config import MonitorConfig, RetrainConfig
from tagops.pipelines.adapter import SECRETS_ENV, from_parameter, secrets_for_steps, to_parameter

pytestmark = pytest.mark.unit

WEBHOOK = "https://hooks.example.com/services/T0KEN"
DATABASE = "postgresql+psycopg://tagops:s3cret@db/tagops"


def test_step_parameters_hold_no_secret_and_steps_get_them_back() -> None:
    monitor = MonitorConfig(webhook_url=WEBHOOK, database_url=DATABASE, window_hours=12)
    retrain = RetrainConfig(database_url=DATABASE)
    parameters = [to_parameter(monitor), to_parameter(retrain), to_parameter([monitor])]
    stored = json.dumps(parameters)
    assert "T0KEN" not in stored and "s3cret" not in stored
    assert parameters[0]["window_hours"] == 12
    before = os.environ.get(SECRETS_ENV)
    with secrets_for_steps(monitor, retrain):
        assert from_parameter(MonitorConfig, parameters[0]) == monitor
        assert from_parameter(RetrainConfig, parameters[1]) == retrain
    assert os.environ.get(SECRETS_ENV) == before
    # outside a run (or in a step whose environment lacks them) the secrets are simply absent
    restored = from_parameter(MonitorConfig, parameters[0])
    assert restored.webhook_url is None and restored.window_hours == 12


def test_configs_without_secrets_pass_unchanged() -> None:
    plain = MonitorConfig()
    with secrets_for_steps(plain):
        assert json.loads(os.environ[SECRETS_ENV]) == {}
        assert from_parameter(MonitorConfig, to_parameter(plain)) == plain


def test_a_process_without_a_main_file_gets_the_current_folder_as_zenml_source_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook, ``python -c`` or a test worker: ZenML would refuse to run a pipeline there."""
    import types

    from zenml.utils import source_utils

    from tagops.pipelines.adapter import ensure_source_root

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(source_utils, "_CUSTOM_SOURCE_ROOT", None)
    with pytest.raises(RuntimeError, match="main module does not have an associated file"):
        source_utils.get_source_root()
    ensure_source_root()
    assert source_utils.get_source_root() == str(tmp_path)
