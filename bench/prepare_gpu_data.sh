#!/usr/bin/env bash
# Prepare, on this CPU machine, the synthetic data sets a lent GPU trains on (bench/gpu_session.sh):
# the GPU machine has no Ray, dlib or face-alignment, so it takes Parquet prepared here. Writes
# .gpu/prepared/<dataset>-<hash> (ignored by git; give the device tool carry [".gpu"]) and prints
# each folder. Sizes: JAFFE's (10 subjects, 7 classes, 210 images) and CK+'s (47 subjects x 7
# expressions = 329 labelled sequences, CK+ has 327, each giving its last 3 frames and a neutral
# first: 1,316 images), at 256 px, through the real pipeline (SSD detector, dlib landmarks).
#
#   bash bench/prepare_gpu_data.sh [DATASETS]      (default: "jaffe ckplus")
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
export RAY_AUTH_MODE=disabled
work=${TMPDIR:-/tmp}/partfer_gpu_synth
for ds in ${1:-jaffe ckplus}; do
  case "$ds" in
    jaffe)  args=(--layout jaffe --subjects 10 --per-class 3) ;;
    ckplus) args=(--layout ckplus --subjects 47 --per-class 1 --frames 6) ;;
    *) echo "unknown data set $ds (jaffe | ckplus)" >&2; exit 2 ;;
  esac
  rm -rf "$work/$ds"
  $py -m partfer synth "${args[@]}" --out "$work/$ds" --seed 0 --size 256
  $py -m partfer prep --dataset "$ds" --root "$work/$ds" --out .gpu --no-progress
done
ls -d .gpu/prepared/*/
