#!/usr/bin/env bash
# Install torch (the version constraints.txt pins) into PYTHON's environment, before the package:
#   - a machine with an NVIDIA GPU (nvidia-smi answers): the registry's default build (CUDA);
#   - a machine without: the CPU build from the PyTorch CPU index, if it answers within 5 s; else the registry's
#     build (on Linux that is the CUDA build, large but it runs on CPU), saying so.
# usage: scripts/install_torch.sh PYTHON [--dry-run]   (extra pip options for torch: $TORCH_PIP_ARGS)
set -euo pipefail
PY=${1:?usage: scripts/install_torch.sh PYTHON [--dry-run]}
DRY=${2:-}
INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
ARGS=${TORCH_PIP_ARGS:-}
if [[ -z "$ARGS" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    echo "set-up: NVIDIA GPU found: torch from the registry (its CUDA build)"
  elif "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$INDEX" \
      >/dev/null 2>&1; then
    ARGS="--index-url=$INDEX"
    echo "set-up: no NVIDIA GPU: torch's CPU build from $INDEX"
  else
    echo "set-up: no NVIDIA GPU, and $INDEX did not answer in 5 s: torch from the registry instead (on Linux its" \
         "CUDA build, which runs on CPU too)"
  fi
else
  echo "set-up: torch with TORCH_PIP_ARGS=$ARGS"
fi
CMD=("$PY" -m pip install --quiet $ARGS -c constraints.txt torch)
if [[ "$DRY" == "--dry-run" ]]; then echo "would run: ${CMD[*]}"; exit 0; fi
"${CMD[@]}"
"$PY" -c "import torch; print('set-up: installed torch', torch.__version__)"
