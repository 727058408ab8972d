"""Training throughput (images/s of one epoch) of every defense on this device.

    python benchmarks/train.py --device cpu --n 256 --batch 128

Runs the pipeline's own epoch loop (``repro.runs.train`` through
``repro.cost.timing.epoch_seconds``, as ``python -m repro calibrate`` does; it calls
``repro.defenses.training_loss``) on synthetic CIFAR-shaped data, with the protocol of the
given config (default: the paper's ``config.yaml``; ImageNet weights are not needed for
timing, so the model starts from random weights). For each defense it also prints the
matrix work of one training image (``repro.cost.flops``) and the rate at which the device did it;
on a card whose datasheet peak it knows (or with ``--peak-tflops``), how far the epoch is
from that FLOP floor. Beside it, the practical bound: the same defense at a large batch
(``--bound-batch``), where kernels are big enough that launching them costs next to nothing;
``vs bound`` is how many times longer an image takes at ``--batch``. The last line is a
ready-made ``python -m repro estimate`` argument.

``--barrier DIR:K`` makes K concurrent copies (benchmarks/gpu.sh, stage ``concurrent``) start
their timed epoch together, each after its own warm-up: their images/s then add up to what
the card does with K runs at once.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from repro.runtime import device as device_setup  # noqa: E402
from repro.cli import apply_overrides  # noqa: E402
from repro import registry  # noqa: E402
from repro.config import Settings, load_config  # noqa: E402
from repro.cost.flops import card_peak_tflops, training_flops  # noqa: E402
from repro.cost.timing import epoch_seconds, synthetic_split  # noqa: E402
from repro.runtime.graphs import graphs_wanted  # noqa: E402
from repro.grid import main_run  # noqa: E402


BARRIER_TIMEOUT = 600  # seconds; a peer that died before the barrier must not hang the others


def wait_for_peers(barrier: str | None) -> None:
    """``DIR:K``: announce this process in DIR, then wait until K processes have."""
    if not barrier:
        return
    folder, count = barrier.rsplit(":", 1)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while len(list(Path(folder).iterdir())) < int(count):
        if time.monotonic() > deadline:
            raise SystemExit(f"barrier {folder}: {int(count)} processes expected, "
                             f"{len(list(Path(folder).iterdir()))} arrived in {BARRIER_TIMEOUT} s")
        time.sleep(0.05)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=256, help="images in the timed epoch")
    parser.add_argument("--size", type=int, default=32, help="input height = width")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--bound-batch", type=int, default=0,
                        help="batch of the large-batch bound (0: 4096 on CUDA, 2 x --batch "
                             "on CPU; -1: skip it)")
    parser.add_argument("--barrier", metavar="DIR:K",
                        help="start the timed epoch once K processes have reached DIR")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set training.precision=bf16")
    parser.add_argument("--defenses", nargs="+", default=list(registry.ids("defense")),
                        choices=registry.ids("defense"))
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
    device = device_setup.select_device(args.device)
    split = synthetic_split(args.n, args.size, device)
    bound_batch = args.bound_batch or (4096 if device.type == "cuda" else 2 * args.batch)
    bound_split = synthetic_split(bound_batch, args.size, device) if bound_batch > 0 else None
    peak = args.peak_tflops or card_peak_tflops(device, settings.training.precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    graphs = graphs_wanted(settings.runtime.cuda_graphs, device)
    print(f"one epoch of {args.n} synthetic {args.size}x{args.size} images, batch {args.batch}, "
          f"{name}, {settings.training.precision}, CUDA graphs {'on' if graphs else 'off'}, "
          f"{torch.get_num_threads()} threads, peak {peak or '?'} TFLOP/s, bound at batch "
          f"{bound_batch if bound_split else '-'}, protocol of {args.config}\n")
    print(f"{'defense':<14}{'run':<24}{'seconds':>9}{'images/s':>10}{'cost':>7}"
          f"{'GFLOP/img':>11}{'TFLOP/s':>9}{'vs floor':>10}{'bound/s':>10}{'vs bound':>9}")
    rates = {}
    for defense in args.defenses:
        run = main_run(config, defense)
        seconds = epoch_seconds(settings, run, split, args.batch, device,
                                lambda: wait_for_peers(args.barrier))
        rates[defense] = args.n / seconds
        bound = ""
        if bound_split is not None:
            bound_rate = bound_batch / epoch_seconds(settings, run, bound_split, bound_batch,
                                                     device)
            bound = f"{bound_rate:10.1f}{bound_rate / rates[defense]:8.2f}x"
        base = rates.get("standard")
        cost = f"{base / rates[defense]:6.1f}x" if base else f"{'-':>7}"
        flops = training_flops(settings, run, args.size)
        achieved = flops * rates[defense] / 1e12
        floor = f"{peak / achieved:9.1f}x" if peak else f"{'-':>10}"
        print(f"{defense:<14}{run.name:<24}{seconds:9.2f}{rates[defense]:10.1f}{cost}"
              f"{flops / 1e9:11.3f}{achieved:9.2f}{floor}{bound}")
    print("\ncost = time per image relative to standard training\n"
          "GFLOP/img = convolutions and matrix products of one training image, attack included\n"
          "vs floor = epoch time / the time those FLOPs take at the peak")
    if bound_split is not None:
        print(f"bound/s = images/s of one epoch of {bound_batch} images at batch "
              f"{bound_batch}; vs bound = bound/s / images/s")
    print("--images-per-second " + " ".join(f"{d}={r:.1f}" for d, r in rates.items())
          + (f" --peak-tflops {peak}" if peak else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
