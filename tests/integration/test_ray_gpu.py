"""With ``--gpus-per-worker 1`` on a CUDA machine, the Ray Train worker trains on the GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import isolated_home, run_cli
from tests.integration.test_ray_train import FIXTURE_WORDS, short_home, tiny_config
from tests.tiny_encoder import write_tiny_encoder


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU on this machine"),
]


def test_gpus_per_worker_trains_on_the_gpu(tmp_path: Path) -> None:
    import json

    import yaml

    from tagops.models import load_model, read_model_info

    encoder = write_tiny_encoder(tmp_path / "tiny-bert", extra_words=FIXTURE_WORDS)
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(encoder, epochs=2).model_dump(mode="json")))
    with short_home() as home, isolated_home(home):
        result = run_cli(
            "train",
            "--config",
            config_path,
            "--gpus-per-worker",
            "1",
            "--no-register",
            timeout=900,
            fresh_process=True,
        )
        assert result.returncode == 0, result.explain()
        model_dir = Path(json.loads(result.stdout)["model_dir"])
        assert read_model_info(model_dir)["training"]["device"].startswith("cuda")
        # the saved model is device-neutral: it loads and predicts on a CPU-only process
        assert load_model(model_dir).predict_proba(["Image segmentation"]).shape == (1, 4)
