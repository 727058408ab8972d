"""What AutoAttack (repro.attacks.autoattack, torchattacks' components) costs per 1,000 images, next
to the PGD-20 it audits, timed in the same run on the same model and images.

    python benchmarks/autoattack.py --device cpu --n 16 --threads 1

Its cost depends on the model: each component attacks only the points every earlier one
failed to fool, so a model that PGD breaks costs little more than APGD-CE, and a robust one
pays for every component, Square's 5,000 queries included. Two cases bracket it:

- ``fooled``: ε = 8/255 on the benchmark model (briefly trained, not robust): APGD-CE fools
  nearly every point, the cheap end;
- ``robust``: ε = 1e-4, where no point can be fooled: every correct point goes through every
  component at its full budget, the price of a perfectly robust model.

Timed on ``--n`` images (one batch) and scaled linearly to 1,000 (the per-image cost of a
batch this small is, if anything, higher than at the pipeline's 500; the output says so).
``vs PGD-20`` compares CPU seconds on a CPU, which other processes on a shared machine do not
inflate, and wall seconds on a GPU, whose work the process's CPU time does not count.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import prototypes, synchronize, trained_model  # noqa: E402
from repro import attacks  # noqa: E402
from repro.attacks.autoattack import COMPONENTS, ORIGINAL_BUDGET, autoattack  # noqa: E402
from repro.runtime.device import select_device  # noqa: E402

CASES = {"fooled": 8 / 255, "robust": 1e-4}


def timed(device, job):
    """(wall seconds, this process's CPU seconds, result): on a shared machine the wall time
    also counts the other processes' turns, the CPU time only ours."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = job()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=16, help="images timed (one batch)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    torch.backends.cudnn.benchmark = False  # AutoAttack's batches shrink: no per-shape tuning
    model = trained_model(args.size, 20, device)
    x, y = prototypes(args.n, args.size, 1, device)
    scale = 1000 / args.n
    print(f"ResNet-18, {args.size}x{args.size}, {args.n} images, {device}, "
          f"{torch.get_num_threads()} threads; seconds scaled to 1,000 images (x{scale:g})")
    print(f"{'case':<8}{'attack':<12}{'wall s/1000':>12}{'CPU s/1000':>12}{'vs PGD-20':>11}"
          f"  accuracy after")
    for case, epsilon in CASES.items():
        pgd_s, pgd_cpu, adv = timed(device, lambda: attacks.pgd(
            model, x, y, epsilon, epsilon / 4, 20, clip=(0, 1)))
        with torch.no_grad():
            pgd_acc = (model(adv).argmax(1) == y).float().mean().item()
        aa_s, aa_cpu, found = timed(device, lambda: autoattack(model, x, y, epsilon, True,
                                                               ORIGINAL_BUDGET, seed=0))
        aa_acc = (found["logits"].argmax(1) == y).float().mean().item()
        first = {name: int((found["fooled_by"] == i).sum()) for i, name in enumerate(COMPONENTS)}
        print(f"{case:<8}{'PGD-20':<12}{pgd_s * scale:>12.1f}{pgd_cpu * scale:>12.1f}"
              f"{1:>10.1f}x  {100 * pgd_acc:.1f}%")
        # on a GPU the process's CPU time is the host's, not the work's: compare wall times
        ratio = aa_s / pgd_s if device.type == "cuda" else aa_cpu / pgd_cpu
        print(f"{case:<8}{'AutoAttack':<12}{aa_s * scale:>12.1f}{aa_cpu * scale:>12.1f}"
              f"{ratio:>10.1f}x  {100 * aa_acc:.1f}% (fooled first by {first})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
