#!/usr/bin/env bash
# Every GPU speed benchmark of diffad in one go: the time limits below add up to 7.5 minutes
# (one H200 planned; not run yet: no GPU was available when it was written).
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR]      # default: $OUT if set, else runs/gpu_suite
#
# Runs, each under its own time limit (a benchmark that fails or runs out of time is reported as
# such and the suite goes on with the next one):
#   1. bench_inference.py              paper preset, 256 px: released-style (fp32, eager, batch 1)
#                                      vs fast (batch 16, bf16, channels-last), and one-step vs
#                                      DDPM from t = T (1000 UNet calls) and from t_s (201), measured
#   2. bench_train.py --no-compile     paper preset, 256 px, batch 16: fp32 eager vs bf16 +
#                                      channels-last + fused Adam
#   3. bench_inference.py --compile    as 1 with torch.compile (DDPM measured on 20 steps only)
#   4. bench_train.py                  as 2 with torch.compile (the full fast path)
#   5. bench_metrics.py                AUPRO, exact vs 1000 thresholds (CPU of the GPU machine)
# Each benchmark's last stdout line (one JSON object) goes to stdout and to OUT_DIR/<name>.json;
# OUT_DIR/suite.log holds everything printed, OUT_DIR/env.txt the versions and the GPU.
#
# Dependencies: PyTorch with CUDA (the project's GPU machine has PyTorch 2.11 and numpy, scipy,
# scikit-learn, scikit-image, safetensors, tqdm, pillow) plus kornia, which it lacks. Wheels found
# in .whl/ are installed first into /tmp/site (no network needed there). Fetch them beforehand on
# a machine with pip and network, from the repository root (Python 3.12, x86-64, as there):
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl kornia kornia_rs
#
# (add safetensors, or any other package that `python3 -m pip show NAME` says is missing there,
# to the same command; keep one version of each; kornia is pure Python, kornia_rs is its compiled
# helper). With the project's device tool: carry [".whl"] and run `bash benchmarks/gpu_suite.sh`.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-runs/gpu_suite}}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/suite.log"
: > "$LOG"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    date -u
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda); print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"  || echo "torch missing"
    "$PY" -c "import kornia; print('kornia', kornia.__version__)" || echo "kornia missing: put its wheels in .whl/ (see the header)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
} 2>&1 | tee "$OUT_DIR/env.txt"

if ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "no CUDA device: this suite measures GPU figures; run the benchmarks with --quick on a CPU instead" | tee -a "$LOG"
    exit 1
fi

failed=0
# run NAME TIMEOUT_S SCRIPT ARGS...: the JSON line (last stdout line) -> stdout and OUT_DIR/NAME.json
run() {
    local name="$1" limit="$2" script="$3"
    shift 3
    echo "=== $name: $script $* (limit ${limit}s)" | tee -a "$LOG"
    local start=$SECONDS status=0
    timeout --signal=TERM --kill-after=10 "$limit" "$PY" "benchmarks/$script" "$@" > "$OUT_DIR/$name.out" 2>> "$LOG" || status=$?
    cat "$OUT_DIR/$name.out" >> "$LOG"
    if [ "$status" -eq 0 ] && tail -n 1 "$OUT_DIR/$name.out" | "$PY" -c "import json, sys; json.loads(sys.stdin.read())" 2>/dev/null; then
        tail -n 1 "$OUT_DIR/$name.out" | tee "$OUT_DIR/$name.json"
    else
        [ "$status" -eq 124 ] && why="timed out after ${limit}s" || why="exit status $status"
        echo "{\"benchmark\": \"$name\", \"error\": \"$why\"}" | tee "$OUT_DIR/$name.json"
        failed=$((failed + 1))
    fi
    rm -f "$OUT_DIR/$name.out"
    echo "--- $name took $((SECONDS - start)) s" >> "$LOG"
}

run inference        90 bench_inference.py
run train            90 bench_train.py --no-compile
run inference_compiled 110 bench_inference.py --compile --ddpm-steps 20
run train_compiled  130 bench_train.py --compile
run metrics          30 bench_metrics.py --repeat 3

echo "suite done in ${SECONDS} s, $failed benchmark(s) failed; results in $OUT_DIR" | tee -a "$LOG"
[ "$failed" -eq 0 ]  # exit status 1 when any benchmark failed
