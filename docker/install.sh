#!/usr/bin/env bash
# Install tagops with its runtime dependencies into a virtual environment, as the image ships it.
#
#   docker/install.sh [--dependencies-only] VENV_DIR [PROJECT_DIR]
#
# The Dockerfile's builder stage runs this script, and so does CI (tests/integration/test_image_scripts.py),
# so what CI checks is what the image holds. VENV_DIR is used if it already holds a virtual environment,
# else created with $PYTHON (default: python3.11). PROJECT_DIR defaults to this script's repository.
# --dependencies-only installs what the constraints pin and not tagops: the image's builder caches that
# layer apart from the sources, and a second run without it then installs only tagops.
#
# Environment:
#   TORCH_INDEX_URL  index to take the torch wheel from (the image passes PyTorch's CPU index, since the
#                    ordinary index serves the multi-GB CUDA build on Linux); empty: pip's configured index.
#   CONSTRAINTS      pip constraints file pinning every installed package (default:
#                    PROJECT_DIR/docker/constraints.txt); empty: only the project's own pins apply, which is
#                    how that file is written again after a dependency changes (its header has the command)
set -euo pipefail

# The same pins as the Makefile and pyproject.toml (tests/unit/test_image_files.py holds them equal).
TORCH_VERSION=2.13.0
PIP_VERSION=26.3

dependencies_only=false
if [[ ${1:-} == --dependencies-only ]]; then
  dependencies_only=true
  shift
fi
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 [--dependencies-only] VENV_DIR [PROJECT_DIR]" >&2
  exit 2
fi
venv=$1
project=$(cd "${2:-$(dirname "${BASH_SOURCE[0]}")/..}" && pwd)
constraints=${CONSTRAINTS-$project/docker/constraints.txt}
if [[ $dependencies_only == true && -z $constraints ]]; then
  echo "$0: --dependencies-only installs what CONSTRAINTS pins; it is empty" >&2
  exit 2
fi

if [[ ! -x $venv/bin/python ]]; then
  "${PYTHON:-python3.11}" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --no-cache-dir --disable-pip-version-check)
pinned=()
if [[ -n $constraints ]]; then
  pinned=(--constraint "$constraints")
fi

"${pip[@]}" install --quiet "pip==$PIP_VERSION"

# torch first and pinned, so the project's requirement finds it installed instead of choosing a build.
# From a separate index only torch itself comes from there: its dependencies are installed with the project
# below, from the ordinary index and under the same constraints as everything else.
if [[ -n ${TORCH_INDEX_URL:-} ]]; then
  "${pip[@]}" install --progress-bar off --no-deps --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
else
  "${pip[@]}" install --progress-bar off "${pinned[@]}" "torch==$TORCH_VERSION"
fi

if [[ $dependencies_only == true ]]; then
  "${pip[@]}" install --progress-bar off --requirement "$constraints" "${pinned[@]}"
  exit 0
fi

# The project as a wheel (not editable, no dev extras), built from a copy of its sources: a build writes
# build/ and *.egg-info next to them, which must not land in the repository or the image.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/project"
tar -C "$project" --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md src \
  | tar -C "$work/project" -xf -
"${pip[@]}" wheel --progress-bar off --no-deps --wheel-dir "$work/dist" "$work/project"
"${pip[@]}" install --progress-bar off "${pinned[@]}" "$work"/dist/tagops-*.whl
"${pip[@]}" check
