#!/usr/bin/env bash
# gpu_check.sh: everything that needs a CUDA GPU, in one run, with no network.
#
#   1. installs CuPy from ./.whl/ if that folder exists (pip --no-index: wheels only, offline);
#   2. runs the conformance suite on the cupy backend and on torch on CUDA (bounded: by default
#      at most 3 minutes each, 6 in all);
#   3. runs the GPU tests of the cupy backend (tests/cupy);
#   4. runs benchmarks/bench_gpu.py (cupy vs torch-CUDA, fused vs generic, bandwidth);
#   5. prints a summary of the steps, then the benchmark table last.
#
# Usage:  scripts/gpu_check.sh [--quick]        (--quick: CIFAR shapes only in the benchmark)
# Environment (all optional):
#   PYTHON            interpreter (default: .venv/bin/python if present, else python3)
#   OUT               folder for logs and JSON results (default: ./gpu_check_out)
#   CONFORMANCE_S     seconds allowed per conformance run (default 180)
#   TESTS_S           seconds allowed for tests/cupy (default 120)
#   BENCH_S           seconds allowed for the benchmark (default 180)
# Exit status: 0 when every step passed, 1 otherwise. See docs/cupy.md.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3; fi
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
CONFORMANCE_S="${CONFORMANCE_S:-180}"
TESTS_S="${TESTS_S:-120}"
BENCH_S="${BENCH_S:-180}"
BENCH_ARGS=()
[[ "${1:-}" == "--quick" ]] && BENCH_ARGS+=(--quick)

SUMMARY=()
FAILED=0

# run_step NAME SECONDS CMD...: run CMD bounded by SECONDS, log to $OUT/NAME.log, record status.
run_step() {
    local name="$1" seconds="$2"; shift 2
    local start=$SECONDS status rc
    echo "=== $name (at most ${seconds}s): $*"
    timeout --kill-after=15 "$seconds" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status="pass" ;;
        124|137) status="TIMEOUT after ${seconds}s"; FAILED=1 ;;
        *) status="FAIL (exit $rc)"; FAILED=1 ;;
    esac
    SUMMARY+=("$(printf '%-24s %-22s %5ss  %s' "$name" "$status" "$((SECONDS - start))" "$OUT/$name.log")")
}

echo "=== environment"
nvidia-smi -L 2>&1 || echo "nvidia-smi not found"
if [[ -d .whl ]]; then
    echo "=== installing wheels from .whl/ (offline)"
    "$PY" -m pip install --no-index --find-links .whl .whl/*.whl || FAILED=1
fi

# Without an installed project (no entry points), run from the source tree and name the
# backends by module path, which the registry also accepts.
if "$PY" -c "import dirac_core as dc, sys; sys.exit('cupy' not in dc.backend_names())" 2>/dev/null; then
    CUPY_SPEC="cupy"; TORCH_SPEC="torch@cuda"
else
    export PYTHONPATH="$ROOT:$ROOT/backends:$ROOT/conformance${PYTHONPATH:+:$PYTHONPATH}"
    CUPY_SPEC="dirac_cupy.backend:CupyBackend"; TORCH_SPEC="dirac_torch.backend:TorchBackend@cuda"
fi
"$PY" - <<'EOF'
import importlib
for name in ("numpy", "cupy", "torch", "hypothesis", "pytest"):
    try:
        mod = importlib.import_module(name)
        extra = f" (CUDA {mod.version.cuda}, GPU {mod.cuda.is_available()})" if name == "torch" else ""
        print(f"{name:<11} {mod.__version__}{extra}")
    except Exception as exc:
        print(f"{name:<11} MISSING: {exc}")
import dirac_core as dc
for backend, reason in dc.available_backends().items():
    print(f"backend {backend:<7} {'usable' if not reason else 'NOT usable: ' + reason}")
EOF

if [[ -x "$(dirname "$PY")/dirac-conformance" ]]; then
    CONFORMANCE=("$(dirname "$PY")/dirac-conformance")
elif command -v dirac-conformance >/dev/null 2>&1; then
    CONFORMANCE=(dirac-conformance)
else
    CONFORMANCE=("$PY" -c "import sys; from dirac_conformance.cli import main; sys.exit(main())")
fi
run_step conformance-cupy "$CONFORMANCE_S" \
    "${CONFORMANCE[@]}" "$CUPY_SPEC" --profile ci --json "$OUT/conformance-cupy.json"
run_step conformance-torch-cuda "$CONFORMANCE_S" \
    "${CONFORMANCE[@]}" "$TORCH_SPEC" --profile ci --json "$OUT/conformance-torch-cuda.json"
run_step tests-cupy "$TESTS_S" \
    "$PY" -m pytest -q -p no:cacheprovider tests/cupy -rs
run_step bench-gpu "$BENCH_S" \
    "$PY" benchmarks/bench_gpu.py "${BENCH_ARGS[@]}" --json "$OUT/bench_gpu.json"

echo
echo "=== summary (logs and JSON in $OUT)"
printf '%s\n' "${SUMMARY[@]}"
echo
echo "=== benchmark table"
# The table is the tail of the benchmark's output, from its header line on.
sed -n '/^op  /,$p' "$OUT/bench-gpu.log"
exit "$FAILED"
