#!/bin/bash
# The GPU path proven in one command on a machine with CUDA (a lent device machine included):
#
#   tools/gpu_check.sh [OUT_DIR [all|tests|bench]]      (default: $OUT, else runs/gpu-check; all)
#
# 1. the cuda-marked tests (make test-gpu's: tests/test_cuda.py), failing if CUDA is absent;
# 2. bench/case_gpu.py (make bench-gpu's) into OUT_DIR/gpu.json and gpu.md (copy them to
#    results/bench/ to make fcn plan use them).
# Each part has a time limit, TEST_SECONDS (default 330) and BENCH_SECONDS (default 240), so that
# both report within one 10-minute device call: at its limit a part gets SIGINT (pytest then prints
# what ran; the bench has written gpu.json after each phase it finished), SIGKILL 15 s later.
# Python: $PY if given, else .venv/bin/python if its torch sees a GPU, else python3 (on a machine that
# cannot install the pinned CUDA wheel, the Python that already holds a CUDA torch); the repository is
# put on PYTHONPATH, so nothing needs installing. Logs: OUT_DIR/test-gpu.log, OUT_DIR/bench-gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DEST=${1:-${OUT:-runs/gpu-check}}
WHAT=${2:-all}
case "$WHAT" in all|tests|bench) ;; *) echo "gpu_check: usage: $0 [OUT_DIR [all|tests|bench]]" >&2; exit 2 ;; esac
TEST_SECONDS=${TEST_SECONDS:-330}
BENCH_SECONDS=${BENCH_SECONDS:-240}
mkdir -p "$DEST"
sees_gpu() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
if [ -z "${PY:-}" ]; then
    for candidate in .venv/bin/python python3; do
        if [ -x "$(command -v "$candidate")" ] && sees_gpu "$candidate"; then PY=$candidate; break; fi
    done
fi
if [ -z "${PY:-}" ] || ! sees_gpu "$PY"; then
    echo "gpu_check: no Python here whose torch sees a CUDA GPU (tried ${PY:-.venv/bin/python, python3})" >&2
    exit 3
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi -L
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), torch.cuda.get_device_name(0), "GPUs:", torch.cuda.device_count())'

# limited SECONDS COMMAND...: COMMAND, interrupted after SECONDS (exit 124, or 137 if killed)
limited() {
    local limit=$1; shift
    timeout --signal=INT --kill-after=15 "$limit" "$@"
}
timed_out() { [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; }
test_rc=0 bench_rc=0
if [ "$WHAT" != bench ]; then
    start=$SECONDS
    limited "$TEST_SECONDS" env FCN_REQUIRE_CUDA=1 "$PY" -m pytest -q -m cuda -p no:cacheprovider --durations=15 \
        tests/test_cuda.py 2>&1 | tee "$DEST/test-gpu.log"
    test_rc=${PIPESTATUS[0]}
    timed_out "$test_rc" && echo "gpu_check: cuda tests stopped at their ${TEST_SECONDS} s limit (TEST_SECONDS)"
    echo "gpu_check: cuda tests exit $test_rc in $((SECONDS - start)) s"
fi
if [ "$WHAT" != tests ]; then
    start=$SECONDS
    limited "$BENCH_SECONDS" "$PY" -m bench.case_gpu --out "$DEST/gpu.json" 2>&1 | tee "$DEST/bench-gpu.log"
    bench_rc=${PIPESTATUS[0]}
    timed_out "$bench_rc" && echo "gpu_check: bench-gpu stopped at its ${BENCH_SECONDS} s limit (BENCH_SECONDS); gpu.json holds the phases it finished"
    echo "gpu_check: bench-gpu exit $bench_rc in $((SECONDS - start)) s"
fi
[ "$test_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
