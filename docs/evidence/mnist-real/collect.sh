#!/usr/bin/env bash
# Copies the finished real-MNIST run (config/mnist-real.yaml) into this folder and records the
# machine and the wall time. Run from the repository root after
#   /usr/bin/time -v -o results/mnist-real/time.txt \
#     snakemake --cores 2 --configfile config/mnist-real.yaml
# (results/mnist-real/started.txt holds the start time, `date -u` before that command).
# Usage: [SHARED_WITH='what else ran'] bash docs/evidence/mnist-real/collect.sh [RESULTS]
set -euo pipefail
src=${1:-results/mnist-real}
dst=docs/evidence/mnist-real
for f in table2 table8 table9 tableA; do cp "$src/$f.md" "$src/$f.csv" "$dst/"; done
for f in comparison checks ledger; do cp "$src/$f.md" "$src/$f.csv" "$dst/"; done
cp "$src/provenance.csv" "$dst/"
mkdir -p "$dst/plots" && cp "$src/plots/epsilon.png" "$src/plots/epsilon.pdf" \
    "$src"/plots/curves-table*.png "$dst/plots/"
# every run's training curve (epoch, losses, accuracies, seconds): a few hundred bytes each
(cd "$src" && find runs -name metrics.csv) | while read -r f; do
  mkdir -p "$dst/$(dirname "$f")" && cp "$src/$f" "$dst/$f"
done
{
  echo "command: snakemake --cores 2 --configfile config/mnist-real.yaml (nice -n 19, nohup)"
  echo "commit: $(git rev-parse HEAD)"
  echo "started: $(cat "$src/started.txt" 2>/dev/null || echo unknown)"
  echo "finished: $(date -u -r "$src/comparison.md" +%FT%TZ)"
  grep -E "Elapsed|User time|System time|Percent of CPU|Exit status" "$src/time.txt" \
    2>/dev/null | sed 's/^\t*//' || echo "wall time: not recorded"
  echo "nproc: $(nproc)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "memory: $(free -g | awk '/Mem:/ {print $2 " GiB"}')"
  echo "torch: $(python -c 'import torch; print(torch.__version__)')"
  # what else ran on the machine meanwhile (the wall time depends on it), when given
  [ -z "${SHARED_WITH:-}" ] || echo "shared: $SHARED_WITH"
} > "$dst/machine.txt"
echo "copied to $dst"
