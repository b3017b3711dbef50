#!/usr/bin/env bash
# headlens's GPU benchmarks in one run: under 8 minutes on one GPU, every figure in one JSON file.
#
#     bash benchmarks/gpu.sh [--dry-run] [--out DIR] [--no-install]
#
# On a GPU machine with no network (its python3 holding a CUDA torch and transformers), after
# `bash benchmarks/gpu_wheels.sh` here and with .whl/ carried along: installs the wheels from
# .whl/ (--no-index) and headlens from this working tree (pip install --no-deps -e ., and src/
# on PYTHONPATH in any case), then runs, on CUDA at BERT-base size,
#
#   machine       GPU name and count, torch / transformers versions, date
#   pytest_gpu    pytest -m gpu tests/test_gpu.py (device=auto, CUDA sweep = CPU sweep, bf16)
#   scoring_cost  grad and lrp scoring against a forward + backward
#   sweep_cost    per-example sweep against its floor and the batch-1 loop; peak memory at N, 4N
#   precision     bf16 / fp16 evaluation: trained easy-VQA demo models (accuracy) and random
#                 BERT-base-size models (speed)
#   export_speed  physically pruned models at 30/50/70 % of the heads removed
#   torchrun      2 processes against 1, only with two GPUs or more
#
# and writes $OUT/gpu_figures.json (schema: benchmarks/gpu_report.py) and $OUT/gpu_run.log.
# Each step has its own time limit, cut to what the whole run's budget (GPU_BUDGET_S, 450 s;
# dry run 900 s, with 5× the limits) has left; a step that fails or runs out of time is recorded and the run goes on; the JSON is
# rewritten after every step, so a run stopped from outside keeps what it measured.
#
# --dry-run: the same steps on the CPU at tiny sizes with a handful of examples (seconds; no
# install), which proves the script works where there is no GPU. --out DIR: where the files go
# (default $OUT, else a new temporary folder). --no-install: use the python3 as it is.
set -uo pipefail # no -e: a step that fails is recorded and the run goes on

DRY=0
INSTALL=1
OUT_DIR=${OUT:-}
while (($#)); do
    case $1 in
    --dry-run) DRY=1 INSTALL=0 ;;
    --no-install) INSTALL=0 ;;
    --out)
        OUT_DIR=${2:?--out needs a folder}
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"
        exit 0
        ;;
    *)
        echo "gpu.sh: unknown argument '$1' (see: bash benchmarks/gpu.sh --help)" >&2
        exit 2
        ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
[[ -n $OUT_DIR ]] || OUT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/headlens-gpu-XXXXXX")
mkdir -p "$OUT_DIR" || exit 1
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/headlens-gpu-work-XXXXXX")
FIGURES=$OUT_DIR/gpu_figures.json
LOG=$OUT_DIR/gpu_run.log
RAW=$WORK/raw.json # the scripts' --json file; gpu_report.py moves each step's part into FIGURES
SITE=${GPU_SITE:-$WORK/site}
BUDGET=${GPU_BUDGET_S:-450}
SCALE=1 # step limits ×: a dry run is a check, not a measurement; a busy CPU must not fail it
((DRY)) && BUDGET=${GPU_BUDGET_S:-900} SCALE=5
: >"$LOG"
rm -f "$OUT_DIR/pytest_gpu.xml" # a stale one would pass for this run's

# What each step runs: CUDA at BERT-base size, or (dry run) the CPU at tiny sizes.
CACHE=$WORK/models # trained easy-VQA demo models; gpu_wheels.sh --models makes a carried copy
[[ -d $ROOT/.whl/models ]] && CACHE=$ROOT/.whl/models
if ((DRY)); then
    DEVICE=cpu
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # tiny models: threads only add overhead (and CI cores are shared)
    SCORING=(--sizes tiny --batch 2 --repeat 1)
    SWEEP=(--sizes tiny --examples 4 --original-examples 2 --repeat 1 --families visual_bert) # no --memory: 2 more processes
    PRECISION=(--dtype bfloat16 float16 --examples 8 --quick --random-size tiny --random-examples 4 --families visual_bert)
    EXPORT=(--size tiny --batch 2 --repeat 1 --families visual_bert)
    TORCHRUN=(--nproc 2 --examples 16)
    CACHE=$WORK/models
else
    DEVICE=cuda
    SCORING=(--sizes base --batch 16 --repeat 5)
    SWEEP=(--sizes base --examples 64 --original-examples 8 --repeat 3 --memory)
    PRECISION=(--dtype bfloat16 float16 --examples 500 --random-size base --random-examples 128)
    EXPORT=(--size base --batch 16 --repeat 7)
    TORCHRUN=(--nproc 2 --examples 256)
fi

say() { echo "[gpu.sh $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

report() { "$PY" benchmarks/gpu_report.py "$@" 2>&1 | tee -a "$LOG"; }

record() { # record NAME STATUS SECONDS LIMIT REASON COMMAND [EXTRA …]
    report step --out "$FIGURES" --raw "$RAW" --name "$1" --status "$2" --seconds "$3" --limit "$4" \
        --reason "$5" --command "$6" "${@:7}"
}

left() { echo $((BUDGET - SECONDS)); }

step() { # step NAME LIMIT_S COMMAND …: run it under its limit (cut to the budget left), record it
    local name=$1 limit=$(($2 * SCALE)) rc status reason="" started seconds
    shift 2
    local extra=()
    [[ $name == pytest_gpu ]] && extra=(--junit "$OUT_DIR/pytest_gpu.xml")
    if (($(left) < 15)); then
        say "step $name: not run, the run's budget of $BUDGET s is spent"
        record "$name" not_run 0 0 "the run's budget of $BUDGET s was spent" "$*"
        return
    fi
    ((limit > $(left))) && limit=$(left)
    say "step $name (limit $limit s): $*"
    record "$name" running 0 "$limit" "" "$*"
    started=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case $rc in
    0) status=ok ;;
    124 | 137) status=timeout reason="stopped at its limit of $limit s" ;;
    *) status=failed reason="exit status $rc (see gpu_run.log)" ;;
    esac
    say "step $name: $status in $seconds s"
    record "$name" "$status" "$seconds" "$limit" "$reason" "$*" "${extra[@]}"
}

finish() {
    local status=$1
    trap - EXIT INT TERM
    report finish --out "$FIGURES" --status "$status"
    say "figures: $FIGURES; log: $LOG"
    rm -rf "$WORK"
}
trap 'finish interrupted; exit 130' INT TERM
trap 'finish interrupted' EXIT

PLAN=(--plan "device=$DEVICE" --plan "budget_s=$BUDGET" --plan "models_cache=$CACHE" --plan "scoring_cost=${SCORING[*]}"
    --plan "sweep_cost=${SWEEP[*]}" --plan "precision=${PRECISION[*]}" --plan "export_speed=${EXPORT[*]}"
    --plan "torchrun=${TORCHRUN[*]}")
((DRY)) && PLAN+=(--dry-run)
report init --out "$FIGURES" "${PLAN[@]}"
say "headlens GPU benchmarks ($( ((DRY)) && echo "dry run, CPU" || echo "CUDA")) from $ROOT; budget $BUDGET s; out $OUT_DIR"

# install: the carried wheels into SITE, headlens editable; src/ and SITE on PYTHONPATH whatever pip did.
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
if ((INSTALL)); then
    started=$SECONDS
    status=ok reason=""
    shopt -s nullglob
    wheels=("$ROOT"/.whl/*.whl)
    shopt -u nullglob
    if ((${#wheels[@]})); then
        say "installing ${#wheels[@]} wheels into $SITE"
        timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${wheels[@]}" 2>&1 | tee -a "$LOG"
        ((PIPESTATUS[0])) && status=failed reason="the wheels from .whl/ did not install"
    else
        reason="no wheels in .whl/ (make them with bash benchmarks/gpu_wheels.sh); "
    fi
    say "pip install --no-deps -e ."
    timeout 60 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tee -a "$LOG"
    ((PIPESTATUS[0])) && reason+="pip install -e . failed, src/ on PYTHONPATH instead; "
    if ! "$PY" -c "import headlens, omegaconf, easy_vqa" 2>&1 | tee -a "$LOG"; then
        status=failed reason+="headlens or one of its dependencies does not import"
    fi
    record install "$status" $((SECONDS - started)) 120 "$reason" "pip install (.whl/*.whl, -e .)"
fi

step machine 60 "$PY" benchmarks/gpu_report.py machine --raw "$RAW"
step pytest_gpu 90 "$PY" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -rs --junitxml "$OUT_DIR/pytest_gpu.xml"
step scoring_cost 60 "$PY" benchmarks/scoring_cost.py --device "$DEVICE" "${SCORING[@]}" --json "$RAW"
step sweep_cost 100 "$PY" benchmarks/sweep_cost.py --device "$DEVICE" "${SWEEP[@]}" --json "$RAW"
step precision 170 "$PY" benchmarks/precision.py "demo.cache_dir=$CACHE" --device "$DEVICE" "${PRECISION[@]}" --json "$RAW"
step export_speed 60 "$PY" benchmarks/export_speed.py --device "$DEVICE" "${EXPORT[@]}" --json "$RAW"

GPUS=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("machine", {}).get("cuda_devices", 0))' \
    "$RAW" 2>/dev/null || echo 0)
if ((GPUS >= 2)); then
    step torchrun 90 "$PY" benchmarks/parallel_sweep.py --device auto "${TORCHRUN[@]}" --json "$RAW"
elif ((DRY)) && [[ ${GPU_DRY_TORCHRUN:-0} == 1 ]]; then # 2 gloo processes on the CPU
    step torchrun 90 "$PY" benchmarks/parallel_sweep.py --device cpu "${TORCHRUN[@]}" --json "$RAW"
else
    record torchrun skipped 0 0 "needs two GPUs; this machine has $GPUS" "benchmarks/parallel_sweep.py ${TORCHRUN[*]}"
fi

finish complete
