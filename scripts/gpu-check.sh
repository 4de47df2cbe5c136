#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (driver and CUDA toolkit installed), in about ten
# minutes,
#   1. builds the workspace, its tests and benches with `--features cuda`;
#   2. runs the test suite once: every `#[device_test]` runs on CUDA (`DYNLAB_DEVICE=cuda`) and on
#      wgpu (Vulkan on that machine);
#   3. runs the step bench on CUDA and on wgpu, the model zoo's bench (VGG-16, ResNet-18, ... at
#      batch 128) and the kernel benches (elementwise, linalg) on CUDA; the step and zoo benches
#      after their PyTorch peers on the same GPU (`benches/peers/{step,zoo}_torch.py`);
#   4. if time is left, Burn's peer benches from `benches/peers` (its wgpu device; needs cargo);
# and writes `benches/results/gpu-*.csv`: `gpu-info.csv` (the GPU, driver, revision, date, stage
# times), `gpu-tests.csv` (passed/failed per test binary), `gpu-step.csv`, `gpu-wgpu-step.csv`,
# `gpu-zoo.csv`, `gpu-elementwise.csv`, `gpu-linalg.csv` and the peers' `gpu-step-torch.csv`,
# `gpu-zoo-torch.csv`, `gpu-<bench>.csv`.
# Commit those files.
#
#   scripts/gpu-check.sh                 # the check
#   BUDGET=600 scripts/gpu-check.sh      # seconds for the whole check (default 570)
#   DEVICE=wgpu FEATURES= scripts/gpu-check.sh   # the same flow without CUDA (a dry run anywhere)
#
# GPU nodes often have no Rust toolchain (and no network for crates). Then build where cargo is and
# carry the binaries:
#   scripts/gpu-check.sh --pack DIR      # here: build with --features cuda, put the stripped test
#                                        # and bench executables in DIR (with a list of them)
#   scripts/gpu-check.sh --packed DIR    # on the GPU node, in a copy of this repository: the same
#                                        # check, running DIR's executables instead of cargo
#                                        # (each under TEST_SECONDS, default 150; BENCH_SECONDS,
#                                        # default 240, kept for the benches)
# The test binaries find their data through the absolute path of the repository they were built in;
# `--packed` links that path to the repository it runs in when the path does not exist there. With
# no Vulkan loader on the node (`ldconfig -p | grep libvulkan`), the wgpu stages and `_wgpu` test
# variants are skipped and the CSVs say so.
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
TEST_SECONDS=${TEST_SECONDS:-150}
BENCH_SECONDS=${BENCH_SECONDS:-240}

# The commit checked out here, `-dirty` when the tree differs from it.
revision() {
    echo "$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
}

# --pack DIR: build with cargo and put the test and bench executables in DIR, each stripped, with
# `DIR/list` (kind, name, file per line) and `DIR/built-in` (this repository's absolute path).
pack() {
    local dir=$1
    mkdir -p "$dir"
    echo "gpu-check: building ${FEATURES:-without features} into $dir"
    cargo build --release "${feature_args[@]}" --workspace --tests --benches \
        --message-format=json >"$LOGS/pack.json" || {
        echo "gpu-check: the build failed (cargo build --release ${feature_args[*]} --workspace --tests --benches)"
        exit 1
    }
    python3 - "$LOGS/pack.json" "$dir" <<'PY' || exit 1
import json, os, subprocess, sys

log, out = sys.argv[1], sys.argv[2]
rows = []
for line in open(log):
    msg = json.loads(line)
    exe = msg.get("executable") if msg.get("reason") == "compiler-artifact" else None
    if not exe:
        continue
    kinds, name = msg["target"]["kind"], msg["target"]["name"]
    if "proc-macro" in kinds:
        continue  # its tests link the toolchain's libstd dynamically: they need cargo's machine
    if "bench" in kinds:
        kind = "bench"
    elif "test" in kinds:
        kind = "test"
    elif msg["profile"]["test"]:
        kind = "unittests"
    else:
        continue
    file = f"{kind}-{name}"
    subprocess.run(["strip", "-o", os.path.join(out, file), exe], check=True)
    rows.append(f"{kind} {name} {file}")
with open(os.path.join(out, "list"), "w") as f:
    f.write("\n".join(sorted(rows)) + "\n")
print(f"gpu-check: {len(rows)} executables in {out}")
PY
    pwd >"$dir/built-in"
    revision >"$dir/revision"
    du -sh "$dir"
}

PACKED=""
case "${1:-}" in
"") ;;
--pack)
    [ -n "${2:-}" ] || { echo "usage: scripts/gpu-check.sh --pack DIR"; exit 2; }
    pack "$2"
    exit 0
    ;;
--packed)
    [ -f "${2:-}/list" ] || { echo "usage: scripts/gpu-check.sh --packed DIR (a folder made by --pack)"; exit 2; }
    PACKED=$(cd "$2" && pwd)
    built_in=$(cat "$PACKED/built-in")
    if [ ! -e "$built_in" ]; then
        mkdir -p "$(dirname "$built_in")" && ln -s "$PWD" "$built_in"
    fi
    ;;
*)
    echo "usage: scripts/gpu-check.sh [--pack DIR | --packed DIR]"
    exit 2
    ;;
esac

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

# The packed executables of one kind (`test`, `unittests`, `bench`): "name file" per line.
packed() { awk -v kind="$1" '$1 == kind {print $2, $3}' "$PACKED/list"; }

# Every packed test binary, each under `TEST_SECONDS` and all of them under the time left less
# `BENCH_SECONDS` (kept for the benches), into $LOGS/tests.log in the layout
# cargo test prints (one parser reads both); `_wgpu` variants skipped without a Vulkan loader or
# with `WGPU_TESTS=0`.
run_packed_tests() {
    local skip=() name file budget t=$SECONDS
    [ "$wgpu_tests" = run ] || skip=(--skip _wgpu)
    echo "gpu-check: tests (packed, up to $(($(left) - BENCH_SECONDS)) s)"
    : >"$LOGS/tests.log"
    while read -r name file; do
        budget=$(($(left) - BENCH_SECONDS))
        [ "$budget" -gt "$TEST_SECONDS" ] && budget=$TEST_SECONDS
        case $file in
        unittests-*) echo "     Running unittests src/lib.rs (packed/$name-0)" ;;
        *) echo "     Running tests/$name.rs ($file)" ;;
        esac >>"$LOGS/tests.log"
        if [ "$budget" -lt 10 ]; then
            echo "gpu-check: $file skipped (no time left)" >>"$LOGS/tests.log"
            continue
        fi
        env DYNLAB_DEVICE="$DEVICE" timeout "$budget" "$PACKED/$file" "${skip[@]}" \
            >>"$LOGS/tests.log" 2>&1 || echo "gpu-check: $file exit $?" >>"$LOGS/tests.log"
    done < <(packed unittests; packed test)
    echo "gpu-check: tests done after $((SECONDS - t)) s"
    stages="$stages;tests=packed/$((SECONDS - t))s"
}

# bench_command NAME: sets `bench_cmd` to the command line that runs bench NAME (from cargo or the
# pack), to be followed by the bench's own arguments.
bench_command() {
    if [ -n "$PACKED" ]; then
        bench_cmd=("$PACKED/bench-$1" --bench)
    else
        bench_cmd=(cargo bench "${feature_args[@]}" --bench "$1" --)
    fi
}

# cudarc opens libnvrtc (and libcuda) with dlopen: when the loader does not know the toolkit's
# library folder, add it (never its `stubs/` folder, whose libcuda answers CUDA_ERROR_STUB_LIBRARY).
if [ "$DEVICE" = cuda ] && ! ldconfig -p 2>/dev/null | grep libnvrtc >/dev/null; then
    nvcc_path=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    for dir in ${CUDA_HOME:-} ${CUDA_PATH:-} "$(dirname "$(dirname "$nvcc_path")")"; do
        lib=$(ls -d "$dir"/lib64 "$dir"/targets/*/lib 2>/dev/null | head -1)
        if [ -n "$lib" ] && ls "$lib"/libnvrtc.so* >/dev/null 2>&1; then
            export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            echo "gpu-check: NVRTC from $lib"
            break
        fi
    done
fi

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
gpu=${gpu:-none found}
cuda=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
vulkan=yes
if [ -n "$PACKED" ] && ! ldconfig -p 2>/dev/null | grep libvulkan >/dev/null; then
    vulkan=no
fi
wgpu_tests=run
[ "$vulkan" = yes ] || wgpu_tests="skipped (no Vulkan loader)"
[ "${WGPU_TESTS:-1}" = 0 ] && wgpu_tests="skipped (WGPU_TESTS=0)"

if [ -n "$PACKED" ]; then
    run_packed_tests
else
    stage build 60 cargo build --release "${feature_args[@]}" --workspace --tests --benches
    stage tests 60 env DYNLAB_DEVICE="$DEVICE" cargo test --release "${feature_args[@]}" --workspace
fi
# Per test binary: its name, passed, failed, ignored, seconds (from cargo's summary lines).
{
    echo "device,\"$DEVICE ($gpu)\""
    echo "wgpu variants,$wgpu_tests"
    echo "binary,passed,failed,ignored,seconds"
    awk '/Running unittests/{bin=$NF; gsub(/^\(.*\/|-[0-9a-f]+\)$/,"",bin); bin="unittests "bin}
         /Running tests\//{bin=$2}
         /Doc-tests /{bin="doc-tests "$2}
         /^gpu-check: .* exit [0-9]+$/{print bin",exit "$NF",,,"}
         /^gpu-check: .* skipped \(no time left\)$/{print bin",skipped (no time left),,,"}
         /^test result:/{gsub(/;/,""); gsub(/s$/,"",$NF); print bin","$4","$6","$8","$NF}' \
        "$LOGS/tests.log"
    grep -E '^test .* FAILED$' "$LOGS/tests.log" | sed 's/^test /failed,/; s/ \.\.\. FAILED$//'
} >"$RESULTS/gpu-tests.csv"

# The step bench reads the peers' step results from gpu-step-torch.csv (PyTorch on the GPU, run
# first) and gpu-step-burn.csv (written by the Burn stage below, so on a first check its Burn
# columns are empty: rerun the step stage afterwards to fill them).
stage peers-step-torch 45 env DYNLAB_TORCH_DEVICE=cuda DYNLAB_BENCH_RESULTS=gpu- \
    python3 benches/peers/step_torch.py || true
bench_command step
stage step 60 env DYNLAB_DEVICE="$DEVICE" DYNLAB_BENCH_RESULTS=gpu- "${bench_cmd[@]}"
stage peers-zoo-torch 60 env DYNLAB_TORCH_DEVICE=cuda DYNLAB_BENCH_RESULTS=gpu- \
    python3 benches/peers/zoo_torch.py || true
bench_command zoo
stage zoo 60 env DYNLAB_DEVICE="$DEVICE" DYNLAB_BENCH_RESULTS=gpu- "${bench_cmd[@]}"
bench_command elementwise
stage elementwise 60 env DYNLAB_DEVICE="$DEVICE" DYNLAB_BENCH_RESULTS=gpu- \
    "${bench_cmd[@]}" --warm-up-time 1 --measurement-time 2
bench_command linalg
stage linalg 45 env DYNLAB_DEVICE="$DEVICE" DYNLAB_BENCH_RESULTS=gpu- "${bench_cmd[@]}"
if [ "$vulkan" = yes ]; then
    bench_command step
    stage step-wgpu 90 env DYNLAB_DEVICE=wgpu DYNLAB_BENCH_RESULTS=gpu-wgpu- "${bench_cmd[@]}"
fi
if command -v cargo >/dev/null; then
    for name in step matmul conv attention autodiff; do
        stage "peers-$name" 120 env DYNLAB_BENCH_RESULTS=gpu- sh -c \
            "cd benches/peers && cargo bench --bench $name -- --warm-up-time 1 --measurement-time 2" || true
    done
fi

{
    echo "key,value"
    echo "gpu,\"$gpu\""
    echo "cuda,${cuda:-unknown}"
    echo "device,$DEVICE"
    if [ -n "$PACKED" ]; then
        echo "revision,$(cat "$PACKED/revision") (packed)"
    else
        echo "revision,$(revision)"
    fi
    echo "date,$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "stages,${stages#;}"
    echo "seconds,$((SECONDS - START))"
} >"$RESULTS/gpu-info.csv"
echo "gpu-check: done in $((SECONDS - START)) s; results in $RESULTS/gpu-*.csv, logs in $LOGS"
ls "$RESULTS"/gpu-*.csv
