#!/usr/bin/env bash
# The image's entry point: `tagops serve`, configured from the environment.
#
#   TAGOPS_VENV          the virtual environment tagops is installed in (default /opt/venv)
#   TAGOPS_ENGINE        uvicorn (one process, the default) or ray (Ray Serve inside the container)
#   TAGOPS_HOST          listen address (default 0.0.0.0: the container's own network is the boundary, and
#                        publishing a port is the decision to expose the API)
#   TAGOPS_PORT          listen port (default 8000)
#   TAGOPS_SERVE_CONFIG  a serving config YAML, e.g. /opt/tagops/configs/serve.yaml; the variables above,
#                        with their defaults, win over its engine, host and port
#   TAGOPS_MODEL_URI     the model: models:/NAME@ALIAS, models:/NAME/N or a model folder. Unset: the model
#                        baked into the image (a model.json in TAGOPS_MODEL_DIR, default /opt/tagops/model),
#                        else models:/tagops@champion from the registry at MLFLOW_TRACKING_URI
#
# Arguments that start with "-" are added to `tagops serve`'s (docker run IMAGE --replicas 2); any other
# command runs instead, in the same environment (the compose file runs the MLflow server so).
# exec: tagops becomes the process the container's stop signal reaches, and shuts down gracefully on it.
set -euo pipefail

venv=${TAGOPS_VENV:-/opt/venv}
export PATH="$venv/bin:$PATH"

if [[ $# -gt 0 && $1 != -* ]]; then
  exec "$@"
fi

model_dir=${TAGOPS_MODEL_DIR:-/opt/tagops/model}
if [[ -n ${TAGOPS_MODEL_URI:-} ]]; then
  model=$TAGOPS_MODEL_URI
elif [[ -f $model_dir/model.json ]]; then
  model=$model_dir
else
  model=models:/tagops@champion
fi

args=(
  serve
  --engine "${TAGOPS_ENGINE:-uvicorn}"
  --host "${TAGOPS_HOST:-0.0.0.0}"
  --port "${TAGOPS_PORT:-8000}"
  --model "$model"
)
if [[ -n ${TAGOPS_SERVE_CONFIG:-} ]]; then
  args+=(--config "$TAGOPS_SERVE_CONFIG")
fi
exec "$venv/bin/tagops" "${args[@]}" "$@"
