#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (driver and CUDA toolkit installed), in about ten
# minutes,
#   1. builds the workspace, its tests and benches with `--features cuda`;
#   2. runs the test suite once: every `#[device_test]` runs on CUDA (`DYNLAB_DEVICE=cuda`) and on
#      wgpu (Vulkan on that machine);
#   3. runs the step bench on CUDA and on wgpu, and the kernel benches (elementwise, linalg) on CUDA;
#   4. if time is left, the peer benches from `benches/peers` (Burn's step on its wgpu device, then
#      dynlab next to Burn, wgpu);
# and writes `benches/results/gpu-*.csv`: `gpu-info.csv` (the GPU, driver, revision, date, stage
# times), `gpu-tests.csv` (passed/failed per test binary), `gpu-step.csv`, `gpu-wgpu-step.csv`,
# `gpu-elementwise.csv`, `gpu-linalg.csv` and the peers' `gpu-<bench>.csv`. Commit those files.
#
#   scripts/gpu-check.sh                 # the check
#   BUDGET=600 scripts/gpu-check.sh      # seconds for the whole check (default 570)
#   DEVICE=wgpu FEATURES= scripts/gpu-check.sh   # the same flow without CUDA (a dry run anywhere)
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=${BUDGET:-570}
DEVICE=${DEVICE:-cuda}
FEATURES=${FEATURES-cuda}
RESULTS=benches/results
LOGS=${LOGS:-target/gpu-check}
mkdir -p "$RESULTS" "$LOGS"
START=$SECONDS
export CARGO_TERM_COLOR=never
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"
    chmod 700 "$XDG_RUNTIME_DIR"
    export XDG_RUNTIME_DIR
fi
feature_args=()
[ -n "$FEATURES" ] && feature_args=(--features "$FEATURES")

left() { echo $((BUDGET - (SECONDS - START))); }
stages=""
# stage NAME MIN_SECONDS COMMAND...: runs COMMAND with the time left (skipped under MIN_SECONDS),
# logging to $LOGS/NAME.log and recording its outcome and duration.
stage() {
    local name=$1 min=$2
    shift 2
    local budget
    budget=$(left)
    if [ "$budget" -lt "$min" ]; then
        echo "gpu-check: skipped $name (${budget} s left, needs ${min})"
        stages="$stages;$name=skipped"
        return 1
    fi
    echo "gpu-check: $name (up to ${budget} s)"
    local t=$SECONDS rc=0
    timeout "$budget" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    echo "gpu-check: $name exit $rc after $((SECONDS - t)) s"
    stages="$stages;$name=$rc/$((SECONDS - t))s"
    return "$rc"
}

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
gpu=${gpu:-none found}
cuda=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')

stage build 60 cargo build --release "${feature_args[@]}" --workspace --tests --benches
stage tests 60 env DYNLAB_DEVICE="$DEVICE" cargo test --release "${feature_args[@]}" --workspace
# Per test binary: its name, passed, failed, ignored, seconds (from cargo's summary lines).
{
    echo "device,$DEVICE ($gpu)"
    echo "binary,passed,failed,ignored,seconds"
    awk '/Running unittests/{bin=$NF; gsub(/^\(.*\/|-[0-9a-f]+\)$/,"",bin); bin="unittests "bin}
         /Running tests\//{bin=$2}
         /Doc-tests /{bin="doc-tests "$2}
         /^test result:/{gsub(/;/,""); gsub(/s$/,"",$NF); print bin","$4","$6","$8","$NF}' \
        "$LOGS/tests.log"
    grep -E '^test .* FAILED$' "$LOGS/tests.log" | sed 's/^test /failed,/; s/ \.\.\. FAILED$//'
} >"$RESULTS/gpu-tests.csv"

# The step bench reads the peers' step results from gpu-step-burn.csv (written by the peers' stage
# below, so on a first check its Burn columns are empty: rerun the step stage afterwards to fill them).
stage step 90 env DYNLAB_DEVICE="$DEVICE" DYNLAB_BENCH_RESULTS=gpu- \
    cargo bench "${feature_args[@]}" --bench step
stage step-wgpu 90 env DYNLAB_DEVICE=wgpu DYNLAB_BENCH_RESULTS=gpu-wgpu- \
    cargo bench "${feature_args[@]}" --bench step
stage elementwise 90 env DYNLAB_DEVICE="$DEVICE" DYNLAB_BENCH_RESULTS=gpu- \
    cargo bench "${feature_args[@]}" --bench elementwise -- --warm-up-time 1 --measurement-time 2
stage linalg 60 env DYNLAB_DEVICE="$DEVICE" DYNLAB_BENCH_RESULTS=gpu- \
    cargo bench "${feature_args[@]}" --bench linalg
for bench in step matmul conv attention autodiff; do
    stage "peers-$bench" 120 env DYNLAB_BENCH_RESULTS=gpu- sh -c \
        "cd benches/peers && cargo bench --bench $bench -- --warm-up-time 1 --measurement-time 2" || true
done

{
    echo "key,value"
    echo "gpu,$gpu"
    echo "cuda,${cuda:-unknown}"
    echo "device,$DEVICE"
    echo "revision,$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo -dirty)"
    echo "date,$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "stages,${stages#;}"
    echo "seconds,$((SECONDS - START))"
} >"$RESULTS/gpu-info.csv"
echo "gpu-check: done in $((SECONDS - START)) s; results in $RESULTS/gpu-*.csv, logs in $LOGS"
ls "$RESULTS"/gpu-*.csv
