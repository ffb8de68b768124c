#!/usr/bin/env bash
# One-shot GPU A/B of yolo-ft schedules on the real kidney-stone CT data (H100/H200, ~6-7 min of training).
#
#   bench/gpu_compare.sh DATA_SRC [OUT_DIR]
#
# DATA_SRC: the kidney-stone-ct-yolo folder (as in shared/datasets, e.g. .devdata/kidney); read only.
# OUT_DIR : where compare.json / compare.md / compare.png / per-run summaries go (default: $OUT, else ./gpu_out).
#
# Needs python3 with torch (CUDA) and the project's wheels (ultralytics 8.4.190, albumentations, ...) importable;
# set SITE=/path (default /tmp/site) if they were installed with `pip install --target`. Nothing is downloaded:
# YOLO_OFFLINE=1, the start checkpoint is the bundled COCO YOLO11n (or WEIGHTS=path/to/yolo11n.pt).
#
# What it does
#  1. yolo-ft prepare --resplit: a new 80/20 split, grouped by perceptual-hash near-duplicates, so no
#     validation slice has a near-twin in train (the source split leaks 120/142, see its SOURCE.md).
#  2. yolo-ft compare: SCHEDULES x SEEDS x FRACTIONS at imgsz 640, EPOCHS each, PARALLEL runs at once on the one
#     GPU (yolo11n at batch 16 uses a small part of an H100; 4 runs share it with WORKERS dataloader workers each
#     and images cached in RAM). A hard limit (BUDGET_S) stops training in time; finished runs are tabulated.
#
# Time estimate (defaults: 2 schedules x 2 seeds x fractions 0.25,1.0 = 8 runs, 30 epochs, ~515 train images):
#   images trained = 30 x 2 x 2 x (515 + 129) ~= 77k. yolo11n@640 trains ~600-1000 img/s on one H100/H200
#   when the dataloader keeps up (16 cores: 4 runs x 3 workers, RAM cache) -> 80-130 s of pure training;
#   + per-epoch validation (~129 val images, 240 validations in total, ~1 s each, 4 in parallel) ~60-90 s;
#   + process start, dataset caching and AMP setup (~20 s per run, 2 waves) ~40 s   => ~3-5 min.
#   Adding SCHEDULES=full,two-stage,head makes 12 runs: ~5-7 min. BUDGET_S (default 360 s) caps it either way.
set -euo pipefail

SRC=${1:?usage: bench/gpu_compare.sh DATA_SRC [OUT_DIR]}
OUT_DIR=${2:-${OUT:-$PWD/gpu_out}}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
WORK=${WORK:-/tmp/yft_gpu}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-2}
FRACTIONS=${FRACTIONS:-0.25,1.0}
SCHEDULES=${SCHEDULES:-full,two-stage}
PARALLEL=${PARALLEL:-4}
WORKERS=${WORKERS:-3}
BATCH=${BATCH:-16}
IMGSZ=${IMGSZ:-640}
BUDGET_S=${BUDGET_S:-360}
CONFIG=${CONFIG:-default}
DEVICE=${DEVICE:-0}   # DEVICE=cpu (with tiny EPOCHS/IMGSZ) dry-runs this script on a machine without a GPU

export PYTHONPATH="$REPO${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$WORK/ultralytics" MPLBACKEND=Agg PYTHONUNBUFFERED=1
mkdir -p "$WORK" "$OUT_DIR"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

say "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
DEVICE="$DEVICE" "$PY" - <<'PYEOF'
import os, torch, ultralytics, albumentations
print(f"python ok: torch {torch.__version__} cuda={torch.cuda.is_available()} "
      f"ultralytics {ultralytics.__version__} albumentations {albumentations.__version__}")
assert os.environ["DEVICE"] == "cpu" or torch.cuda.is_available(), "no CUDA device visible"
PYEOF

say "prepare (resplit 0.8/0.2, near-duplicate groups kept on one side)"
if ! "$PY" -m yolo_ft prepare "$SRC" --out "$WORK/kidney" --resplit --split 0.8,0.2,0 --seed 0 --overwrite \
      > "$OUT_DIR/prepare.log" 2>&1; then
  say "0.8,0.2,0 rejected; using 0.8,0.1,0.1"
  "$PY" -m yolo_ft prepare "$SRC" --out "$WORK/kidney" --resplit --split 0.8,0.1,0.1 --seed 0 --overwrite \
      > "$OUT_DIR/prepare.log" 2>&1
fi
tail -n 15 "$OUT_DIR/prepare.log"
cp "$WORK/kidney/report.json" "$OUT_DIR/prepare_report.json" 2>/dev/null || true
cp "$WORK/kidney/data.yaml" "$OUT_DIR/data.yaml"

WEIGHTS_FLAG=()
[[ -n "${WEIGHTS:-}" ]] && WEIGHTS_FLAG=(--weights "$WEIGHTS")
say "compare $SCHEDULES x seeds $SEEDS x fractions $FRACTIONS, $EPOCHS epochs, imgsz $IMGSZ, $PARALLEL parallel (limit ${BUDGET_S}s)"
set +e
timeout -k 30 "$BUDGET_S" "$PY" -m yolo_ft compare --data "$WORK/kidney/data.yaml" --out "$WORK/compare" \
  --config "$CONFIG" --schedules "$SCHEDULES" --epochs "$EPOCHS" --seeds "$SEEDS" --fractions "$FRACTIONS" \
  --imgsz "$IMGSZ" --batch "$BATCH" --device "$DEVICE" --workers "$WORKERS" --cache ram --parallel "$PARALLEL" \
  "${WEIGHTS_FLAG[@]}"
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  say "compare exited $rc (124 = time limit): tabulating the runs that finished"
  "$PY" -m yolo_ft compare --data "$WORK/kidney/data.yaml" --out "$WORK/compare" --config "$CONFIG" \
    --schedules "$SCHEDULES" --epochs "$EPOCHS" --seeds "$SEEDS" --fractions "$FRACTIONS" --imgsz "$IMGSZ" \
    --batch "$BATCH" --device "$DEVICE" --workers "$WORKERS" --cache ram "${WEIGHTS_FLAG[@]}" --collect-only || true
fi

say "collecting results into $OUT_DIR"
cp "$WORK/compare/compare.json" "$WORK/compare/compare.md" "$WORK/compare/compare.png" "$OUT_DIR/" 2>/dev/null || true
mkdir -p "$OUT_DIR/runs" "$OUT_DIR/logs"
for d in "$WORK"/compare/runs/*/; do
  t=$(basename "$d")
  mkdir -p "$OUT_DIR/runs/$t"
  cp "$d"/summary.json "$d"/results.csv "$d"/val_map_per_epoch.png "$d"/yolo_ft_stages.json "$OUT_DIR/runs/$t/" 2>/dev/null || true
done
for f in "$WORK"/compare/logs/*.log; do [[ -f "$f" ]] && tail -n 40 "$f" > "$OUT_DIR/logs/$(basename "$f")"; done
# best full-data two-stage checkpoint for the ONNX export step that follows
best=$(ls -d "$WORK"/compare/runs/f1_two-stage_s0/weights/best.pt 2>/dev/null | head -n1 || true)
[[ -n "$best" ]] && cp "$best" "$OUT_DIR/two-stage_best.pt"
cat "$OUT_DIR/compare.md" 2>/dev/null || say "no compare.md produced"
say "done"
