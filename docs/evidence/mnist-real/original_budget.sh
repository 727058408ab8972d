#!/usr/bin/env bash
# The original AutoAttack budget (APGD-CE 100 steps, APGD-T and FAB-T 9 targets x 100, Square
# 5,000 queries: config.yaml's audit.autoattack) on a subset: seed 0 of AT-PGD and CL-PGD from
# the real-MNIST run, the first N test digits (default 50; ~8 s per robust digit per core).
# The preset's audit runs a smaller budget on 200 digits; this checks what that budget misses.
# Usage, after the run: bash docs/evidence/mnist-real/original_budget.sh [N] [RESULTS]
set -euo pipefail
n=${1:-50}
src=${2:-results/mnist-real}
dst=docs/evidence/mnist-real/original-budget
mkdir -p "$dst"
budget="{apgd_ce: {steps: 100}, apgd_t: {steps: 100, targets: 9}, fab_t: {steps: 100, targets: 9}, square: {queries: 5000}}"
for run in "at-pgd" "cl-pgd --layer embed5 --beta 1.5"; do
  name=${run%% *}
  dir=$(ls -d "$src"/runs/mnist/"$name"*/seed0)
  for which in original preset; do
    out="$dst/$name-seed0-$which-n$n.json"
    extra=(--set audit.n_images="$n" --set audit.chunk_size="$n")
    [ "$which" = original ] && extra+=(--set "audit.autoattack=$budget")
    [ -f "$out" ] || python -m repro evaluate --configfile config/mnist-real.yaml \
      --dataset mnist --defense $run --seed 0 "${extra[@]}" \
      --checkpoint "$dir/model.pt" --attack autoattack --out "$out" > /dev/null
  done
done
python - "$dst" "$n" <<'PY'
import json, pathlib, sys
dst, n = pathlib.Path(sys.argv[1]), sys.argv[2]
print(f"| model, seed 0, first {n} digits | AutoAttack budget | clean | PGD-20 | AutoAttack "
      "| fooled first by (APGD-CE, APGD-T, FAB-T, Square) | seconds |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for path in sorted(dst.glob(f"*-n{n}.json")):
    ev = json.loads(path.read_text())
    name, which = path.stem.split("-seed0-")[0], path.stem.split("-seed0-")[1].rsplit("-", 1)[0]
    b = ev["budget"]
    print(f"| {name} | {which} ({json.dumps(b)}) | {ev['clean_top1']:.1f} | "
          f"{ev['pgd_top1']:.1f} | {ev['autoattack_top1']:.1f} | "
          f"{', '.join(str(v) for v in ev['fooled_first_by'].values())} | "
          f"{ev['wall_seconds']:.0f} |")
PY
