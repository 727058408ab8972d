"""Training throughput (images/s of one epoch) of every defense on this device.

    python benchmarks/train.py --device cpu --n 256 --batch 128

Runs the pipeline's own epoch loop (``repro.train``, which calls
``repro.defenses.training_loss``) on synthetic CIFAR-shaped data, with the protocol of the
given config (default: the paper's ``config.yaml``; ImageNet weights are not needed for
timing, so the model starts from random weights). For each defense it also prints the
matrix work of one training image (``repro.flops``) and the rate at which the device did it;
on a card whose datasheet peak it knows (or with ``--peak-tflops``), how far the epoch is
from that FLOP floor. The last line is a ready-made ``python -m repro estimate`` argument.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from repro import train  # noqa: E402
from repro.cli import apply_overrides  # noqa: E402
from repro.config import DEFENSES, NUM_CLASSES, Settings, load_config  # noqa: E402
from repro.data import Split  # noqa: E402
from repro.flops import card_peak_tflops, training_flops  # noqa: E402
from repro.grid import main_run  # noqa: E402


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def epoch_seconds(settings, run, split, batch, device) -> float:
    torch.manual_seed(0)
    model = train.prepare_model(settings, "cifar10", device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.training.lr)
    warmup = Split(split.images[:batch], split.labels[:batch])  # cudnn autotuning, allocator
    train._train_epoch(settings, model, optimizer, warmup, run, batch, 0, device, False)
    synchronize(device)
    started = time.perf_counter()
    train._train_epoch(settings, model, optimizer, split, run, batch, 1, device, False)
    synchronize(device)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=256, help="images in the timed epoch")
    parser.add_argument("--size", type=int, default=32, help="input height = width")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set training.precision=bf16")
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=DEFENSES)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's dense peak (default: the datasheet's, for known "
                             "cards)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = apply_overrides(load_config(args.config), ["model.pretrained=none", *args.set])
    settings = Settings.from_config(config)
    device = train.select_device(args.device)
    generator = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (args.n, 3, args.size, args.size), dtype=torch.uint8,
                                generator=generator),
                  torch.randint(0, NUM_CLASSES, (args.n,), generator=generator)).to(device)
    peak = args.peak_tflops or card_peak_tflops(device, settings.training.precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"one epoch of {args.n} synthetic {args.size}x{args.size} images, batch {args.batch}, "
          f"{name}, {settings.training.precision}, {torch.get_num_threads()} threads, "
          f"peak {peak or '?'} TFLOP/s, protocol of {args.config}\n")
    print(f"{'defense':<14}{'run':<24}{'seconds':>9}{'images/s':>10}{'cost':>7}"
          f"{'GFLOP/img':>11}{'TFLOP/s':>9}{'vs floor':>10}")
    rates = {}
    for defense in args.defenses:
        run = main_run(config, defense)
        seconds = epoch_seconds(settings, run, split, args.batch, device)
        rates[defense] = args.n / seconds
        base = rates.get("standard")
        cost = f"{base / rates[defense]:6.1f}x" if base else f"{'-':>7}"
        flops = training_flops(settings, run, args.size)
        achieved = flops * rates[defense] / 1e12
        floor = f"{peak / achieved:9.1f}x" if peak else f"{'-':>10}"
        print(f"{defense:<14}{run.name:<24}{seconds:9.2f}{rates[defense]:10.1f}{cost}"
              f"{flops / 1e9:11.3f}{achieved:9.2f}{floor}")
    print("\ncost = time per image relative to standard training\n"
          "GFLOP/img = convolutions and matrix products of one training image, attack included\n"
          "vs floor = epoch time / the time those FLOPs take at the peak")
    print("--images-per-second " + " ".join(f"{d}={r:.1f}" for d, r in rates.items())
          + (f" --peak-tflops {peak}" if peak else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
