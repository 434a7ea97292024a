#!/usr/bin/env bash
# The GPU checks in one go, on a machine with one CUDA GPU (two: a DDP run too), in at most 460 s of limits (under 8 minutes), with one
# Markdown report. `scripts/gpu_check.sh --help`; `--dry-run` says what it would run and runs nothing.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/gpu_check.sh [--out DIR] [--dry-run] [--help]

Runs, each with its own time limit, and writes DIR/gpu-report.md (default DIR: gpu-report):
  1. the GPU tests:                    python -m pytest -m gpu
  2. the tutorial on the GPU:          lr-lightning fit --accelerator gpu
  3. 1M x 16 synthetic data on the GPU: lr-lightning fit --accelerator gpu --data synthetic ...
  4. the exact solver on 2M x 40 with torch.cuda.set_sync_debug_mode("error") (a hidden host sync is an error)
  5. a 2-process DDP run, if two GPUs are visible
  6. the benchmark on the GPU:         lr-lightning benchmark --accelerator gpu (hand loop, package, DataLoader)
--dry-run: print the commands and exit 0 (no GPU needed).
USAGE
}

OUT=gpu-report
DRY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY=1; shift ;;
    --out) [[ $# -ge 2 ]] || { echo "error: --out needs a folder" >&2; exit 2; }; OUT="$2"; shift 2 ;;
    *) echo "error: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python}
LOGS="$OUT/logs"
SYNC='import sys, torch; torch.cuda.set_sync_debug_mode("error"); from lr_lightning.core.main import main; sys.exit(main(sys.argv[1:]))'
CHECKS=(
  "gpu tests|90|$PY -m pytest -q -m gpu -p no:cacheprovider tests"
  "tutorial on gpu|45|$PY -m lr_lightning fit --accelerator gpu --log_dir $LOGS --progress_bar false"
  "1M x 16 synthetic on gpu|75|$PY -m lr_lightning fit --accelerator gpu --data synthetic --data.n_samples 1000000 --data.n_features 16 --max_epochs 3 --log_dir $LOGS --progress_bar false"
  "exact 2M x 40, sync debug error|75|$PY -c '$SYNC' fit --accelerator gpu --solver exact --data synthetic --data.n_samples 2000000 --data.n_features 40 --log_dir $LOGS --progress_bar false"
  "ddp 2 gpus|75|$PY -m lr_lightning fit --accelerator gpu --devices 2 --strategy ddp --max_epochs 2 --log_dir $LOGS --progress_bar false"
  "benchmark on gpu|100|$PY -m lr_lightning benchmark --accelerator gpu --paths [loop,package,dataloader]"
)

if [[ $DRY -eq 1 ]]; then
  echo "gpu_check.sh --dry-run: would write $OUT/gpu-report.md after running:"
  for check in "${CHECKS[@]}"; do
    IFS='|' read -r name limit cmd <<<"$check"
    echo "  [$name, at most ${limit}s] $cmd"
  done
  exit 0
fi

mkdir -p "$LOGS"
REPORT="$OUT/gpu-report.md"
GPUS=$($PY -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 || echo unknown); torch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  echo
  echo "| check | status | seconds |"
  echo "|---|---|---|"
} >"$REPORT"
FAILED=0
i=0
for check in "${CHECKS[@]}"; do
  IFS='|' read -r name limit cmd <<<"$check"
  i=$((i + 1))
  if [[ "$name" == ddp* && "$GPUS" -lt 2 ]]; then
    echo "| $name | skipped ($GPUS GPU) | |" >>"$REPORT"; continue
  fi
  start=$(date +%s)
  timeout "$limit" bash -c "$cmd" >"$LOGS/check-$i.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [[ $rc -eq 0 ]]; then status=passed; else status="FAILED (exit $rc, logs/check-$i.log)"; FAILED=1; fi
  echo "| $name | $status | $secs |" >>"$REPORT"
done
{
  echo
  for f in "$LOGS"/check-*.log; do echo "## $(basename "$f")"; echo; echo '```text'; tail -n 30 "$f"; echo '```'; echo; done
} >>"$REPORT"
echo "Report: $REPORT"
exit $FAILED
