#!/usr/bin/env bash
# The GPU bench in one command, on a machine with a GPU, torch, transformers and peft but no network:
#
#   bash benchmarks/gpu.sh              # LLaVA-1.5-7B shaped, random weights, about 5-7 minutes
#   bash benchmarks/gpu.sh --tiny       # a dry run on CPU (tiny shape, seconds)
#
# It installs what the hf backend needs and the machine lacks (llamafactory 0.9.5 and a few light
# packages, --no-deps) from the wheels `make gpu-wheels` put in benchmarks/wheels/, into a folder
# of its own (never into the machine's site-packages), then runs `python -m benchmarks.gpu "$@"`.
# LLaMA-Factory's version check is switched off (it pins transformers<=5.6); see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=benchmarks/wheels
SITE=${SEVA_GPU_SITE:-${TMPDIR:-/tmp}/seva-gpu-site}
# import name:distribution of everything the hf backend imports that a torch+transformers+peft machine may lack
NEEDED="llamafactory:llamafactory omegaconf:omegaconf pluggy:pluggy PIL:pillow"
missing=()
for pair in $NEEDED; do
  module=${pair%%:*}
  PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "import $module" 2>/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[gpu.sh] installing from $WHEELS into $SITE: ${missing[*]}" >&2
  [ -d "$WHEELS" ] || { echo "[gpu.sh] $WHEELS is missing: run 'make gpu-wheels' where there is network, and carry the folder" >&2; exit 2; }
  "$PY" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" --target "$SITE" --upgrade "${missing[@]}"
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export DISABLE_VERSION_CHECK=1 LLAMAFACTORY_VERBOSITY=WARN TOKENIZERS_PARALLELISM=false
exec "$PY" -m benchmarks.gpu "$@"
