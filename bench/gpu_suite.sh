#!/usr/bin/env bash
# rcs GPU suite: one command that measures rcs on one GPU in under ~9 minutes (issue 16).
#
#   bash bench/gpu_suite.sh [--dry-run] [--out DIR] [--data NPZ] [--budget SECONDS]
#
# Stages (each under `timeout`, each writing its own JSON + log into the results folder, so a
# stage that fails or runs out of time loses only its own figures):
#   1 gpu_tests        pytest -m gpu tests/test_gpu_paths.py (bf16 / channels_last / compile
#                      steps vs fp32 eager, per-sample head gradients, exact-gain retrieval and
#                      the selector on CUDA vs CPU, FAISS GPU retrieval or "skipped: no faiss-gpu")
#     gpu_compile      the torch.compile test of the same file, alone (its compilation is slow)
#   2 throughput       bench/train_throughput.py: full-width ResNet-18 dual-BN ACL, PGD-5, batch
#                      512, the whole CIFAR-10 subset; rcs's trainer (bf16, channels_last,
#                      on-device augmentation) vs the published kind of loop (PIL augmentation
#                      in 4 DataLoader workers, fp32), 3 interleaved repeats -> gpu_throughput_ratio
#   3 select_overhead  bench/select_overhead.py, same model and data, defaults, 3 interleaved
#     select_scale     bench/select_scale.py, 1/4 of ImageNet-1K (320,292 x 1024); rcs's
#                      retrieval has no GPU engine without faiss-gpu (the streaming scan is CPU)
#   4 quality          bench/gpu/quality.py: rcs compare, full vs RCS k=0.2 vs random k=0.2, as
#                      many epochs as the time left allows (warm-up and reselection every E/10),
#                      SLF + PGD-20 on the 1,017 test images
#   then bench/gpu/summary.py: summary.json + summary.md (device, versions, date, every figure,
#   the stages that failed).
# Results go to --out DIR (default runs/gpu_suite/<UTC time>). When $OUT is set (the device
# tool), summary.json, summary.md and five small files (stage JSONs, log tails) are also copied to $OUT/gpu/.
#
# --dry-run: the same stages on the CPU with tiny sizes (width-8 model, ~100 images, 1-2
# epochs, 1 repeat); tests/test_gpu_suite.py runs it.
#
# ON THE DEVICE MACHINE (nvidia-h200: torch, pytest, pyyaml, safetensors, tqdm, scipy and
# matplotlib are there; faiss and submitit are not and are not needed). The data does not
# travel by itself (../shared stays behind), so once, here, in the checkout the session runs in:
#
#   echo /.gpu_data/ >> .git/info/exclude
#   mkdir -p .gpu_data && cp ../shared/data/cifar10-subset/cifar10_subset.npz .gpu_data/
#
# then ONE `run` call, timeout_s 600, carry [".gpu_data"], command:
#
#   RCS_CIFAR10_SUBSET=.gpu_data/cifar10_subset.npz PYTHON=python3 bash bench/gpu_suite.sh
#
# (PYTHONPATH=. is set by this script: nothing is installed). What comes back lies under
# files_at/gpu/; commit summary.json and summary.md to docs/results/gpu/ and cite them in the
# README's "What RCS buys, measured" section.
set -u

DRY=0
RES=""
BUDGET=${GPU_SUITE_BUDGET:-510}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${RCS_CIFAR10_SUBSET:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) RES=$2; shift ;;
    --data) DATA=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    -h|--help) sed -n '2,45p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
cd "$ROOT" || exit 1
if [ -z "$DATA" ]; then
  for c in "$ROOT/.gpu_data/cifar10_subset.npz" "$ROOT/../shared/data/cifar10-subset/cifar10_subset.npz"; do
    [ -f "$c" ] && DATA=$c && break
  done
fi
if [ ! -f "$DATA" ]; then
  echo "gpu_suite.sh: CIFAR-10 subset npz not found ('$DATA'); pass --data or RCS_CIFAR10_SUBSET" >&2
  exit 2
fi
DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")
RES=${RES:-runs/gpu_suite/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$RES" && RES=$(cd "$RES" && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" RCS_QUIET=1 PYTHONUNBUFFERED=1
export RCS_CIFAR10_SUBSET="$DATA"
: > "$RES/stages.tsv"
START=$(date +%s)

if [ "$DRY" = 1 ]; then
  export RCS_GPU_TEST_DEVICE=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  DEV=cpu
  T_TESTS=120; T_COMPILE=60; T_THR=60; T_OVH=60; T_SCALE=30; T_SUM=30
  THR_ARGS=(--width 8 --blocks "[1,1,1,1]" --limit 64 --batch-size 32 --steps 1 --workers 1 --repeats 1)
  OVH_ARGS=(--quick --limit 64 --batch-size 32 --steps 1 --repeats 1 --set selection.rounds=3)
  SCALE_ARGS=(--n 5000 --d 64)
  Q_ARGS=(--epochs 2 --slf-epochs 1 --train-images 99 --set model.width=8
          --set "model.blocks=[1,1,1,1]" --set model.head_dim=32 --set data.limit=80
          --set train.batch_size=32 --set train.attack.steps=1 --set selection.rounds=2
          --set selection.candidate_batch=32 --set eval.limit=32 --set eval.pgd.steps=2
          --finetune-set finetune.slf.batch_size=32)
else
  DEV=cuda
  T_TESTS=75; T_COMPILE=90; T_THR=75; T_OVH=75; T_SCALE=45; T_SUM=20
  THR_ARGS=(--width 64 --blocks "[2,2,2,2]" --limit 0 --batch-size 512 --steps 5 --repeats 3)
  OVH_ARGS=(--limit 0 --batch-size 512 --repeats 3)
  SCALE_ARGS=(--n 320292 --d 1024)
  Q_ARGS=()
fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# stage NAME SECONDS CMD...: run CMD under timeout (never past the suite's budget less the
# summary's reserve), log to NAME.log, record NAME, exit status, seconds in stages.tsv
stage() {
  local name=$1 secs=$2; shift 2
  local cap=$(( $(left) - T_SUM ))
  [ "$secs" -gt "$cap" ] && secs=$cap
  if [ "$secs" -lt 5 ]; then
    printf '%s\t%s\t%s\n' "$name" 124 0 >> "$RES/stages.tsv"
    echo "[gpu_suite] $name: no time left, skipped"
    return
  fi
  echo "[gpu_suite] $name (up to ${secs}s) ..."
  local t0=$(date +%s)
  timeout -k 5 "$secs" "$@" > "$RES/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$RES/stages.tsv"
  echo "[gpu_suite] $name: exit $rc after $(( $(date +%s) - t0 ))s; last lines:"
  tail -n 4 "$RES/$name.log"
}

"$PY" -c "import torch; print('[gpu_suite] torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
[ "$DRY" = 0 ] && command -v nvidia-smi >/dev/null && nvidia-smi -L

stage gpu_tests "$T_TESTS" "$PY" -m pytest -q -m gpu tests/test_gpu_paths.py -p no:cacheprovider \
  -rs -k "not compile" --junitxml="$RES/gpu_tests.xml"
# torch.compile's first compilation can be slow: its own stage, so a timeout there keeps the rest
stage gpu_compile "$T_COMPILE" "$PY" -m pytest -q -m gpu tests/test_gpu_paths.py \
  -p no:cacheprovider -rs -k compile --junitxml="$RES/gpu_compile.xml"
stage throughput "$T_THR" "$PY" bench/train_throughput.py --npz "$DATA" --device "$DEV" \
  "${THR_ARGS[@]}" --json "$RES/throughput.json"
stage select_overhead "$T_OVH" "$PY" bench/select_overhead.py --npz "$DATA" --device "$DEV" \
  "${OVH_ARGS[@]}" --json "$RES/overhead.json"
stage select_scale "$T_SCALE" "$PY" bench/select_scale.py "${SCALE_ARGS[@]}" \
  --store-dir "$RES/scale_store" --json "$RES/scale.json"
rm -rf "$RES/scale_store"
Q_BUDGET=$(( $(left) - T_SUM ))
stage quality "$Q_BUDGET" "$PY" -m bench.gpu.quality --npz "$DATA" --device "$DEV" \
  --budget "$(( Q_BUDGET - 5 ))" --out "$RES/quality" --json "$RES/quality.json" \
  --throughput "$RES/throughput.json" --overhead "$RES/overhead.json" "${Q_ARGS[@]}"

DRYFLAG=(); [ "$DRY" = 1 ] && DRYFLAG=(--dry-run)
"$PY" -m bench.gpu.summary "$RES" "${DRYFLAG[@]}" --wall-seconds "$(( $(date +%s) - START ))" \
  > "$RES/summary.log" 2>&1 || echo "[gpu_suite] summary failed: $RES/summary.log"
for f in "$RES"/*.log; do echo "== $(basename "$f")"; tail -n 40 "$f"; done > "$RES/logs_tail.txt"
cat "$RES/summary.md" 2>/dev/null
if [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ "$OUT" != "$RES" ]; then
  mkdir -p "$OUT/gpu"
  for f in summary.json summary.md throughput.json overhead.json scale.json quality.json \
           logs_tail.txt; do
    [ -f "$RES/$f" ] && cp "$RES/$f" "$OUT/gpu/"
  done
fi
echo "[gpu_suite] results in $RES ($(( $(date +%s) - START ))s)"
[ -f "$RES/summary.json" ]
