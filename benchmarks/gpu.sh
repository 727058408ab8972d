#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md (the target table of issue 11), on synthetic
# CIFAR-shaped data, in one command:
#
#   bash benchmarks/gpu.sh                    # all stages, in this order:
#        check selfcheck calibrate attacks train-fp32 concurrent train-eager train-bf16 estimate
#   bash benchmarks/gpu.sh concurrent         # or some of them
#   bash benchmarks/gpu.sh autoattack         # AutoAttack per 1,000 images (AA_N, default 1000)
#
# Each stage writes $OUT/<stage>.txt (default OUT=benchmarks/out):
#   check        CUDA graphs and padded DeepFool against the eager paths (benchmarks/
#                cuda_check.py: same weights, logits, success rates; DEEPFOOL_N images)
#   selfcheck    a real at-pgd training and PGD evaluation through `python -m repro` with CUDA
#                graphs on (SELFCHECK_N synthetic images, default 512, batch and chunk 64):
#                the self-check each graph makes of its first replay, as the checkpoint and
#                the evaluation JSON record it; fails unless both passed (CPU: graphs unused)
#   calibrate    `python -m repro calibrate` for config.yaml (CALIBRATE_ARGS: config options
#                such as --configfile or --set; CALIBRATE_BUDGET: seconds, default 90), rates
#                into $OUT/rates.yaml (the checks are the check stage's), then `repro
#                estimate` priced with them
#   attacks      FGSM, PGD-20, DeepFool at ATTACK_BATCH (1024) vs torchattacks/foolbox, their
#                floors and large-batch bounds; DeepFool also unpadded with autotuning off
#   train-fp32   every defense, one run, CUDA graphs on (the default), N images, with the
#                FLOP floor and the large-batch bound
#   concurrent   K at-pgd runs at once on the card (K in CONCURRENT, default "1 2 4 8"), each
#                its own process, timed together: their summed images/s
#   train-eager  standard and at-pgd with runtime.cuda_graphs=off (the baseline of the issue)
#   train-bf16   standard and at-pgd in bf16, graphs on (keep bf16 only if faster than fp32)
#   estimate     `repro estimate` for config.yaml with the rates of train-fp32 and attacks
# Sizes: N (images per timed epoch, default 12800), BATCH (training, 128), BOUND_BATCH (of the
# large-batch bound; default 4096 on CUDA), N_CONCURRENT (per process, 4096), ATTACK_BATCH
# (1024), DEVICE (cuda). Reference libraries the machine lacks (torchattacks,
# foolbox) are installed from .whl/ when it holds wheels: see benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/out}
device=${DEVICE:-cuda}
n=${N:-12800}
batch=${BATCH:-128}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/repro-site .whl/*.whl
    export PYTHONPATH=/tmp/repro-site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

python3 - >"$out/machine.txt" <<'PY'
import platform, torch
print(f"torch {torch.__version__}, python {platform.python_version()}")
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
cat "$out/machine.txt"

train() {  # $1: output name, then benchmarks/train.py options
    local name=$1
    shift
    python3 benchmarks/train.py --device "$device" --n "$n" --batch "$batch" "$@" |
        tee "$out/$name.txt"
}

concurrent() {  # K at-pgd processes that start their timed epoch together
    local k i total barrier
    for k in ${CONCURRENT:-1 2 4 8}; do
        barrier=$(mktemp -d)
        for i in $(seq "$k"); do
            python3 benchmarks/train.py --device "$device" --n "${N_CONCURRENT:-4096}" \
                --batch "$batch" --defenses at-pgd --bound-batch -1 --barrier "$barrier:$k" \
                >"$barrier.$i.txt" 2>&1 &
        done
        wait
        for i in $(seq "$k"); do
            tail -n 1 "$barrier.$i.txt" | grep -q -- --images-per-second ||
                { cat "$barrier.$i.txt" >&2; exit 1; }
        done
        total=$(for i in $(seq "$k"); do tail -n 1 "$barrier.$i.txt"; done |
                sed -n 's/.*at-pgd=\([0-9.]*\).*/\1/p' | awk '{s += $1} END {printf "%.1f", s}')
        echo "at-pgd, $k concurrent runs on the card: $total images/s together"
        rm -rf "$barrier" "$barrier".*.txt
    done
}

estimate() {  # with the rates lines of train-fp32 (its last line) and attacks
    local rates
    rates=$(tail -n 1 "$out/train-fp32.txt") &&
        rates+=" $(grep -- '^--attack-images-per-second' "$out/attacks.txt")" ||
        { echo "estimate needs the stages train-fp32 and attacks first" >&2; return 1; }
    # shellcheck disable=SC2086
    python3 -m repro estimate --device "$device" $rates
}

selfcheck() {  # what a real job records of its graphs' self-check
    local dir=$out/selfcheck n=${SELFCHECK_N:-512}
    local run=(--configfile config/smoke.yaml --device "$device" --dataset cifar10
               --defense at-pgd --set training.batch_size=64 --set evaluation.chunk_size=64
               --set training.max_epochs=1 --set data.root="$dir/data"
               --set data.datasets.cifar10.subset="{train: $n, test: $n}")
    mkdir -p "$dir"
    python3 -m repro train "${run[@]}" --out "$dir/model.pt" --no-progress
    python3 -m repro evaluate "${run[@]}" --checkpoint "$dir/model.pt" --attack pgd \
        --out "$dir/pgd.json"
    python3 - "$dir/model.pt" "$dir/pgd.json" "$device" <<'PY'
import json, sys, torch
checkpoint, evaluation, device = sys.argv[1:]
records = {"training": torch.load(checkpoint, weights_only=False)["cuda_graphs"],
           "evaluation": json.load(open(evaluation))["cuda_graphs"]}
ok = True
for what, record in records.items():
    print(f"{what:<12}{json.dumps(record)}")
    if torch.device(device).type == "cuda":
        ok &= record.get("self_check") == "passed"
    else:
        ok &= not record["used"]
print("self-check " + ("ok" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
}

stage() {
    case $1 in
        check) python3 benchmarks/cuda_check.py --device "$device" \
                   --deepfool-n "${DEEPFOOL_N:-1024}" | tee "$out/check.txt" ;;
        selfcheck) selfcheck | tee "$out/selfcheck.txt" ;;
        calibrate) # shellcheck disable=SC2086
            { python3 -m repro calibrate --device "$device" --no-checks --no-progress \
                  --budget "${CALIBRATE_BUDGET:-90}" --out "$out/rates.yaml" \
                  ${CALIBRATE_ARGS:-} &&
                  REPRO_RATES="$out/rates.yaml" python3 -m repro estimate --device "$device" \
                      ${CALIBRATE_ARGS:-}; } | tee "$out/calibrate.txt" ;;
        attacks) python3 benchmarks/attacks.py --device "$device" --size 32 \
                     --batch "${ATTACK_BATCH:-1024}" | tee "$out/attacks.txt" ;;
        train-fp32) train train-fp32 --bound-batch "${BOUND_BATCH:-0}" ;;
        concurrent) concurrent | tee "$out/concurrent.txt" ;;
        train-eager) train train-eager --defenses standard at-pgd --bound-batch -1 \
                         --set runtime.cuda_graphs=off ;;
        train-bf16) train train-bf16 --defenses standard at-pgd --bound-batch -1 \
                        --set training.precision=bf16 ;;
        estimate) estimate | tee "$out/estimate.txt" ;;
        # not in the default stages: at full budget it takes minutes even on a GPU
        autoattack) python3 benchmarks/autoattack.py --device "$device" --n "${AA_N:-1000}" \
                        | tee "$out/autoattack.txt" ;;
        *) echo "unknown stage $1 (check selfcheck calibrate attacks train-fp32 concurrent" \
                "train-eager train-bf16 estimate autoattack)" >&2; return 2 ;;
    esac
}

stages=("$@")
[ $# -gt 0 ] || stages=(check selfcheck calibrate attacks train-fp32 concurrent train-eager
                       train-bf16 estimate)
failed=()
for name in "${stages[@]}"; do  # a failed stage does not cost the figures of the others
    (stage "$name") || failed+=("$name")
done
[ ${#failed[@]} -eq 0 ] || { echo "failed stages: ${failed[*]}" >&2; exit 1; }
