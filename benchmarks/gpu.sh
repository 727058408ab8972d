#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md, on synthetic CIFAR-shaped data, in one command.
#
#   bash benchmarks/gpu.sh                    # all stages: attacks train-fp32 train-bf16
#   bash benchmarks/gpu.sh train-bf16         # or some of them
#   bash benchmarks/gpu.sh autoattack         # AutoAttack per 1,000 images (AA_N, default 1000)
#
# Each stage's output goes to $OUT (default benchmarks/out) as <stage>.txt, and the
# training stages are followed by `repro estimate` with the rates (and the card's peak) they
# printed, as estimate-<precision>.txt. Sizes: N (images per timed epoch, default 50000),
# ATTACK_BATCH (default 1024), DEVICE (default cuda). Reference libraries the machine lacks
# (torchattacks, foolbox) are installed from .whl/ when it holds wheels: see
# benchmarks/README.md, "On a GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/out}
device=${DEVICE:-cuda}
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

train() {  # $1: precision
    python3 benchmarks/train.py --device "$device" --n "${N:-50000}" --batch 128 \
        --set "training.precision=$1" | tee "$out/train-$1.txt"
    # the last line holds --images-per-second ... [--peak-tflops P]
    # shellcheck disable=SC2046
    python3 -m repro estimate $(tail -n 1 "$out/train-$1.txt") | tee "$out/estimate-$1.txt"
}

stages=("$@")
[ $# -gt 0 ] || stages=(attacks train-fp32 train-bf16)
for stage in "${stages[@]}"; do
    case $stage in
        attacks) python3 benchmarks/attacks.py --device "$device" --size 32 \
                     --batch "${ATTACK_BATCH:-1024}" | tee "$out/attacks.txt" ;;
        train-fp32) train fp32 ;;
        train-bf16) train bf16 ;;
        # not in the default stages: at full budget it takes minutes even on a GPU
        autoattack) python3 benchmarks/autoattack.py --device "$device" --n "${AA_N:-1000}" \
                        | tee "$out/autoattack.txt" ;;
        *) echo "unknown stage $stage (attacks, train-fp32, train-bf16, autoattack)" >&2
           exit 2 ;;
    esac
done
