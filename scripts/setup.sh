#!/usr/bin/env bash
# Set up rcs in ./.venv on a fresh machine (idempotent).
# - The venv sees system site-packages, so a torch already installed (e.g. CUDA torch on a GPU
#   node) is used as is.
# - Where torch is missing, torch==2.13.0 is installed FIRST (a CPU build on these machines), so
#   resolving the project's dependencies never pulls a CUDA torch onto a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] torch not found: installing torch==2.13.0 first"
  .venv/bin/pip install -q "torch==2.13.0" || {
    echo "[setup] could not install torch==2.13.0; install a torch build for this machine" \
         "(CPU or CUDA) into .venv first, then run this again" >&2; exit 1; }
fi
if ! .venv/bin/python -c "import rcs, faiss, submitit, pytest, ruff" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.rcs-installed ]; then
  echo "[setup] installing rcs-toolkit (editable) and its dependencies"
  .venv/bin/pip install -q -e ".[dev]"
  touch .venv/.rcs-installed
fi
