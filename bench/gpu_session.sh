#!/usr/bin/env bash
# One device call that builds nothing and measures everything issue 6 asks for:
#   1. the machine (GPU, driver, torch, cuDNN, Triton);
#   2. bench/train_throughput.py: pack-vs-separate and fused-vs-PyTorch-kernels checks, throughput
#      variants, kernel profile;
#   3. the full protocol of the prepared data set (Baseline, FTL, EL at the paper's epochs, all 10
#      folds; JAFFE so far) trained by the inline executor from Parquet prepared on a CPU machine
#      (bench/prepare_gpu_data.sh), with Ray, dlib and face-alignment made unimportable (the GPU
#      machine has none of them); its wall time and report.
# Each part runs under its own time limit, so a slow part cannot take the others' results with it.
#
#   bench/gpu_session.sh PREPARED_DIR [OUT_DIR]     (PREPARED_DIR: .../<dataset>-<hash>)
# e.g. a CK+-sized run at a tenth of the epochs after a first call measured the rest:
#   BENCH_LIMIT=0 RUN_ARGS="--epochs-scale 0.1 --set train.recalibrate_bn=true" \
#     bash bench/gpu_session.sh .gpu/prepared/ckplus-<hash> $OUT
# env: PYTHON (python3), BENCH_LIMIT / RUN_LIMIT (seconds; 0 skips the bench / the run),
# BENCH_VARIANTS (comma list), BENCH_ARGS / RUN_ARGS (extra arguments;
# e.g. a CPU dry run: BENCH_ARGS="--device cpu --image-size 32 --pack 3 --steps 2 --warmup 1"
# RUN_ARGS="--device cpu --image-size 32 --epochs-scale 0.02").
set -u
prep=${1:?usage: bench/gpu_session.sh PREPARED_DIR [OUT_DIR]}
name=$(basename "$prep")
name=${name%-*}                 # jaffe-<hash> -> jaffe
out=${2:-${OUT:-/tmp/gpu_session}}
store=${STORE:-/tmp/partfer_gpu_store}
py=${PYTHON:-python3}
mkdir -p "$out"
# the checkout is the package `partfer`: a folder holding a link to it goes on the path (nothing installed there)
holder=$(mktemp -d /tmp/partfer-checkout-XXXX) && ln -s "$PWD" "$holder/partfer"
export PYTHONPATH="$holder${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  $py -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.is_available())"
  $py -c "import triton; print('triton', triton.__version__)" || echo "no triton: the fused BN kernels stay off"
  echo "cpus $(nproc)"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

run_protocol() {   # run_protocol LIMIT [extra arguments]
  local limit=$1; shift
  # shellcheck disable=SC2086
  timeout "$limit" $py -c "
import sys
for name in ('ray', 'dlib', 'face_alignment'):
    sys.modules[name] = None          # import fails: proves the inline path needs none of them
from partfer.cli import main
sys.exit(main(sys.argv[1:]))
" run --config configs/paper.yaml --prepared "$name=$prep" --executor inline --out "$store" \
    ${RUN_ARGS:-} "$@" 2>&1 | tee -a "$out/$name.log"
  return "${PIPESTATUS[0]}"
}
# shellcheck disable=SC2086
# Variants measured on 2026-11-28 and not changed since (nchw, nobench, x2, fold, repeat, nosplit,
# compile, compile-ro, small, small-x3) are left out by default; BENCH_VARIANTS=all brings them back.
if [ "${BENCH_LIMIT:-180}" -gt 0 ]; then     # (timeout 0 would mean no limit)
timeout "${BENCH_LIMIT:-180}" $py bench/train_throughput.py --variants "${BENCH_VARIANTS:-naive,packed,small,small-x3,packed-stopped,packed-torchaug,packed-splitcopy,packed-nofuse}" \
  --check --profile --count-ops --steps 50 --warmup 10 --json "$out/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log"
timeout 60 $py bench/augment_batch.py --device cuda --models 50 --batch 32 2>&1 | tee -a "$out/bench.log"
fi

echo "$name run settings: defaults ${RUN_ARGS:-}" | tee -a "$out/$name.log"

t0=$(date +%s)
rc=0
if [ "${RUN_LIMIT:-400}" -gt 0 ]; then     # RUN_LIMIT=0: the bench only
# shellcheck disable=SC2086
run_protocol "${RUN_LIMIT:-400}"
rc=$?
fi
elapsed=$(( $(date +%s) - t0 ))
echo "$name run: exit $rc, wall $elapsed s" | tee -a "$out/$name.log"
if [ "${RUN_LIMIT:-400}" -gt 0 ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$elapsed" -lt 90 ]; then
  # a quick failure of concurrent packs must not cost the session its measurement: one pack at a time
  echo "retrying with train.gpus_per_pack=1 (one pack at a time)" | tee -a "$out/$name.log"
  t0=$(date +%s)
  # shellcheck disable=SC2086
  run_protocol $(( ${RUN_LIMIT:-400} - elapsed )) --set train.gpus_per_pack=1
  echo "$name run (one pack at a time): exit $?, wall $(( $(date +%s) - t0 )) s" | tee -a "$out/$name.log"
fi

run_dir=$(ls -dt "$store"/runs/*/ 2>/dev/null | head -1)
if [ "${RUN_LIMIT:-400}" -gt 0 ] && [ -n "$run_dir" ]; then
  tar -czf "$out/${name}_run.tar.gz" --exclude='*.pt' --exclude='*.npz' -C "$run_dir" .
  $py - "$run_dir" <<'EOF' | tee -a "$out/$name.log"
import json, sys
s = json.load(open(f"{sys.argv[1]}/plan.json"))["settings"]
keys = ("status", "wall_seconds", "train_seconds", "pack_seconds", "pack_busy_seconds", "pack_setup_seconds",
        "packs_per_gpu", "trained_model_stages", "train_images", "device", "precision",
        "step_plans")
print({k: s.get(k) for k in keys})
busy = s.get("pack_busy_seconds", s.get("pack_seconds"))
if s.get("train_seconds") and busy is not None:
    print(f"scheduling overhead (training wall time with no pack running): "
          f"{100 * (1 - busy / s['train_seconds']):.1f} %")
if s.get("train_images") and busy:
    print(f"training throughput over the run: {s['train_images'] / busy:.0f} img/s of training models")
EOF
fi

