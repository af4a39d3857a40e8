#!/usr/bin/env bash
# gpu_check.sh: everything that needs a CUDA GPU, in one run of at most 7.5 minutes (--quick:
# 4), from the source tree, with no network and nothing installed.
#
#   budget       the arithmetic: step limits plus kill margins within TOTAL_S, and the warm
#                step's limit against the cold-cache compile time traced on the CPU
#   env          first NVRTC and the CUDA headers (naming the package of a missing one), then
#                versions, GPUs, usable backends (found from the source tree if not installed)
#   warm         compile the fused kernels (a compile error fails the check: no silent
#                fallback to the generic path) and run every op once on both paths
#   conformance-cupy         the conformance suite on the cupy backend (fused path)
#   conformance-torch-cuda   the conformance suite on torch on CUDA
#   tests-cupy   tests/cupy/test_gpu.py: fused and generic paths, kernels vs their mirror
#   ddp          one DistributedDataParallel training step on every GPU of the node (NCCL)
#   bench-gpu    benchmarks/bench_gpu.py (cupy vs torch-CUDA, fused vs generic, bandwidth)
#   bench-memory benchmarks/bench_memory.py --device cuda: peak max_memory_allocated of a
#                DiracNet-34-4 training step against its plain control (not in --quick)
#
# Each step prints which path it measured and its verdict the moment it ends; the benchmark
# prints each table row as it is measured. The summary and the table come last. Every step
# has a time limit, and the limits plus each step's kill margin add up to at most TOTAL_S (a
# step with no time left is reported NOT RUN).
#
# Usage:  scripts/gpu_check.sh [--quick] [--rehearse]
#   --quick     fewer examples, the CIFAR shapes only: fits in 4 minutes
#   --rehearse  on a CPU: the CuPy steps are skipped, torch runs on the CPU with a handful of
#               examples, the ddp step on two CPU processes (gloo) and the benchmark on CPU
#               stand-ins (CI runs this, uninstalled)
# Environment (all optional):
#   PYTHON   interpreter (default: .venv/bin/python if present, else python3)
#   OUT      folder for logs, verdicts and JSON results (default: ./gpu_check_out)
#   TOTAL_S  seconds for the whole run (default 450; --quick 240)
# Exit status: 0 when every step that ran passed, 1 otherwise. See docs/cupy.md.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
QUICK=0
REHEARSE=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --rehearse) REHEARSE=1 ;;
        *) echo "usage: scripts/gpu_check.sh [--quick] [--rehearse]" >&2; exit 2 ;;
    esac
done
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3; fi
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
# The source tree comes first, installed or not: the registry finds its backends either way.
export PYTHONPATH="$ROOT:$ROOT/backends:$ROOT/conformance${PYTHONPATH:+:$PYTHONPATH}"
# A kernel that fails to compile must fail the check, not fall back to the generic path.
export DIRAC_CUPY_STRICT=1

# Per step: seconds allowed, then its arguments; --quick shrinks both. The warm step's limit
# covers a cold kernel cache (see the budget step); the others pace themselves or are short.
if (( QUICK )); then
    DEFAULT_TOTAL_S=240
    LIMITS=(env 15 warm 100 conformance-cupy 20 conformance-torch-cuda 15 tests-cupy 25 ddp 20
            bench-gpu 10)
    CUPY_EXAMPLES=10; TORCH_EXAMPLES=5; GPU_TEST_EXAMPLES=4; BENCH_ARGS=(--quick --repeat 10)
else
    DEFAULT_TOTAL_S=450
    LIMITS=(env 20 warm 100 conformance-cupy 75 conformance-torch-cuda 40 tests-cupy 60 ddp 40
            bench-gpu 40 bench-memory 25)
    CUPY_EXAMPLES=40; TORCH_EXAMPLES=15; GPU_TEST_EXAMPLES=15; BENCH_ARGS=()
fi
TOTAL_S="${TOTAL_S:-$DEFAULT_TOTAL_S}"
SLACK=1  # --rehearse: a shared CPU runner gets twice each limit (the budget is the GPU's)
KILL_AFTER=5  # timeout --kill-after: what a step that ignores SIGTERM may add to its limit
TORCH_SPEC="torch@cuda"
MEMORY_ARGS=(--device cuda --repeat 1 --steps 2)  # max_memory_allocated does not vary
DDP_ARGS=()
if (( REHEARSE )); then
    TORCH_SPEC="torch"; TORCH_EXAMPLES=1; BENCH_ARGS+=(--rehearse --warmup 1 --repeat 2)
    MEMORY_ARGS=(--device cpu --depth 10 --width 1 --batch 2 --size 8 --repeat 1 --steps 1)
    DDP_ARGS=(--cpu); SLACK=2
    # pytest's "nothing collected": test_gpu.py skips itself without CuPy, as it should here.
    TESTS_SKIP_RC=5
fi
export DIRAC_GPU_EXAMPLES="$GPU_TEST_EXAMPLES"

limit_of() {  # limit_of NAME: the step's own limit
    local i
    for ((i = 0; i < ${#LIMITS[@]}; i += 2)); do
        [[ "${LIMITS[i]}" == "$1" ]] && { echo "${LIMITS[i + 1]}"; return; }
    done
}

STARTED=$SECONDS
SUMMARY=()
FAILED=0

# record NAME STATUS SECONDS DETAIL: print the verdict now, keep it for the summary.
record() {
    local line
    line="$(printf '%-24s %-10s %5ss  %s' "$1" "$2" "$3" "$4")"
    echo ">>> $line"
    echo
    SUMMARY+=("$line")
}

# run_step NAME CMD...: CMD bounded by the step's limit (cut to the time left, and exported
# as STEP_LIMIT_S for commands that pace themselves), logged to $OUT/NAME.log. The verdict
# line the command wrote to $OUT/NAME.verdict (else $DETAIL, else the log's name) is its detail.
# An exit status equal to $SKIP_RC means the step skipped itself.
run_step() {
    local name="$1"; shift
    local seconds left start rc status detail
    seconds=$(( $(limit_of "$name") * SLACK ))
    left=$((TOTAL_S * SLACK - (SECONDS - STARTED)))
    (( seconds > left )) && seconds=$left
    if (( seconds < 5 )); then
        record "$name" "NOT RUN" 0 "no time left within TOTAL_S=${TOTAL_S}s"; FAILED=1; return
    fi
    echo "=== $name (at most ${seconds}s): $*"
    rm -f "$OUT/$name.verdict"
    start=$SECONDS
    STEP_LIMIT_S=$seconds timeout --kill-after="$KILL_AFTER" "$seconds" "$@" 2>&1 \
        | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status="pass" ;;
        "${SKIP_RC:-none}") status="skipped" ;;
        124|137) status="TIMEOUT"; FAILED=1 ;;
        *) status="FAIL($rc)"; FAILED=1 ;;
    esac
    detail="$(cat "$OUT/$name.verdict" 2>/dev/null || echo "${DETAIL:-log: $OUT/$name.log}")"
    record "$name" "$status" "$((SECONDS - start))" "$detail"
}

skip_step() {  # skip_step NAME WHY
    record "$1" "skipped" 0 "$2"
}

STEPS=("$PY" scripts/gpu_steps.py)
echo "=== GPUs"
nvidia-smi -L 2>&1 || echo "nvidia-smi not found"
(( REHEARSE )) && echo "=== REHEARSAL on the CPU: CuPy steps skipped, nothing here is measured"

# The budget: every step's limit plus its kill margin must fit in the default total, so that
# no step is cut for want of time on a run that goes to every limit.
SPENT=0
for ((i = 1; i < ${#LIMITS[@]}; i += 2)); do SPENT=$((SPENT + LIMITS[i] + KILL_AFTER)); done
echo "=== budget: $(( ${#LIMITS[@]} / 2 )) steps, limits + ${KILL_AFTER} s kill margin each" \
     "= ${SPENT} s of TOTAL_S=${TOTAL_S} s (default ${DEFAULT_TOTAL_S} s)"
if (( SPENT > DEFAULT_TOTAL_S )); then
    echo "budget: the step limits exceed ${DEFAULT_TOTAL_S} s; fix LIMITS in $0" >&2
    exit 2
fi
# The warm step's limit against the cold-cache compile time, traced on the CPU (no GPU needed).
if ! "${STEPS[@]}" trace --limit "$(limit_of warm)"; then
    echo "budget: the warm step's limit is too short for a cold kernel cache" >&2
    exit 2
fi

run_step env "${STEPS[@]}" --verdict "$OUT/env.verdict" env
if (( REHEARSE )); then
    skip_step warm "rehearsal: needs CuPy and a GPU"
    skip_step conformance-cupy "rehearsal: needs CuPy and a GPU"
else
    run_step warm "${STEPS[@]}" --verdict "$OUT/warm.verdict" warm
    run_step conformance-cupy "${STEPS[@]}" --verdict "$OUT/conformance-cupy.verdict" \
        conformance cupy --examples "$CUPY_EXAMPLES" --json "$OUT/conformance-cupy.json"
fi
run_step conformance-torch-cuda "${STEPS[@]}" --verdict "$OUT/conformance-torch-cuda.verdict" \
    conformance "$TORCH_SPEC" --examples "$TORCH_EXAMPLES" \
    --json "$OUT/conformance-torch-cuda.json"
DETAIL="paths fused and generic: every GPU test runs on both (log: $OUT/tests-cupy.log)" \
SKIP_RC="${TESTS_SKIP_RC:-none}" run_step tests-cupy "$PY" -m pytest -q -p no:cacheprovider tests/cupy/test_gpu.py -rs
run_step ddp "${STEPS[@]}" --verdict "$OUT/ddp.verdict" ddp "${DDP_ARGS[@]}" \
    --report "$OUT/ddp.report"
DETAIL="cupy column: the fused path (the benchmark fails if it fell back)" \
    run_step bench-gpu "$PY" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}" --json "$OUT/bench_gpu.json"
if (( QUICK )); then
    skip_step bench-memory "--quick: only the full check measures memory"
else
    DETAIL="peak memory of a training step, DiracNet / plain: the ratios in $OUT/bench-memory.log" \
        run_step bench-memory "$PY" benchmarks/bench_memory.py "${MEMORY_ARGS[@]}"
fi

echo
echo "=== summary ($((SECONDS - STARTED)) s; logs, verdicts and JSON in $OUT)"
printf '%s\n' "${SUMMARY[@]}"
echo
echo "=== benchmark table (the rows measured, also those of a run cut short)"
sed -n '/^op  *layer/,$p' "$OUT/bench-gpu.log" 2>/dev/null
exit "$FAILED"
