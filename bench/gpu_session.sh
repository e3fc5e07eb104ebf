#!/usr/bin/env bash
# One device call that builds nothing and measures everything issue 6 asks for, in order of value:
#   1. the machine (GPU, driver, torch, cuDNN);
#   2. the full JAFFE protocol (Baseline, FTL, EL at the paper's epochs, all 10 folds) trained by the
#      inline executor from Parquet prepared on a CPU machine, with Ray, dlib and face-alignment
#      made unimportable (the GPU machine has none of them); its wall time and report;
#   3. bench/train_throughput.py: pack-vs-separate check, throughput variants, kernel profile.
# Each part runs under its own time limit, so a slow part cannot take the others' results with it.
#
#   bench/gpu_session.sh PREPARED_DIR [OUT_DIR]
# env: PYTHON (python3), BENCH_LIMIT / RUN_LIMIT (seconds), BENCH_ARGS / RUN_ARGS (extra arguments;
# e.g. a CPU dry run: BENCH_ARGS="--device cpu --image-size 32 --pack 3 --steps 2 --warmup 1"
# RUN_ARGS="--device cpu --image-size 32 --epochs-scale 0.02").
set -u
prep=${1:?usage: bench/gpu_session.sh PREPARED_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/gpu_session}}
store=${STORE:-/tmp/partfer_gpu_store}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  $py -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.is_available())"
  echo "cpus $(nproc)"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

run_jaffe() {   # run_jaffe LIMIT [extra arguments]
  local limit=$1; shift
  # shellcheck disable=SC2086
  timeout "$limit" $py -c "
import sys
for name in ('ray', 'dlib', 'face_alignment'):
    sys.modules[name] = None          # import fails: proves the inline path needs none of them
from orchestrator.cli import main
sys.exit(main(sys.argv[1:]))
" run --config configs/paper.yaml --prepared "jaffe=$prep" --executor inline --out "$store" \
    ${RUN_ARGS:-} "$@" 2>&1 | tee -a "$out/jaffe.log"
  return "${PIPESTATUS[0]}"
}
t0=$(date +%s)
run_jaffe "${RUN_LIMIT:-400}"
rc=$?
elapsed=$(( $(date +%s) - t0 ))
echo "JAFFE run: exit $rc, wall $elapsed s" | tee -a "$out/jaffe.log"
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$elapsed" -lt 90 ]; then
  # a quick failure of concurrent packs must not cost the session its measurement: one pack at a time
  echo "retrying with train.gpus_per_pack=1 (one pack at a time)" | tee -a "$out/jaffe.log"
  t0=$(date +%s)
  run_jaffe $(( ${RUN_LIMIT:-400} - elapsed )) --set train.gpus_per_pack=1
  echo "JAFFE run (one pack at a time): exit $?, wall $(( $(date +%s) - t0 )) s" | tee -a "$out/jaffe.log"
fi

run_dir=$(ls -dt "$store"/runs/*/ 2>/dev/null | head -1)
if [ -n "$run_dir" ]; then
  tar -czf "$out/jaffe_run.tar.gz" --exclude='*.pt' --exclude='*.npz' -C "$run_dir" .
  $py - "$run_dir" <<'EOF' | tee -a "$out/jaffe.log"
import json, sys
s = json.load(open(f"{sys.argv[1]}/plan.json"))["settings"]
keys = ("status", "wall_seconds", "train_seconds", "pack_seconds", "pack_busy_seconds", "pack_setup_seconds",
        "packs_per_gpu", "trained_model_stages", "train_images", "device", "precision")
print({k: s.get(k) for k in keys})
busy = s.get("pack_busy_seconds", s.get("pack_seconds"))
if s.get("train_seconds") and busy is not None:
    print(f"scheduling overhead (training wall time with no pack running): "
          f"{100 * (1 - busy / s['train_seconds']):.1f} %")
if s.get("train_images") and busy:
    print(f"training throughput over the run: {s['train_images'] / busy:.0f} img/s of training models")
EOF
fi

# shellcheck disable=SC2086
# Variants measured on 2026-11-28 and not changed since (nchw, nobench, x2, fold, compile-ro, small,
# small-x3) are left out by default; BENCH_ARGS="--variants all" brings them back.
timeout "${BENCH_LIMIT:-150}" $py bench/train_throughput.py --variants naive,packed,packed-nosplit,packed-repeat,packed-compile \
  --check --profile --steps 50 --warmup 10 --json "$out/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log"
