"""Do the CUDA-only paths compute what the eager ones do? The correctness check of a GPU run
(``bash benchmarks/gpu.sh check``): no test can capture a CUDA graph on a CPU.

    python benchmarks/cuda_check.py --device cuda

The checks themselves (CUDA graphs of training and evaluation against the eager steps, with
the graphs' own self-check; padded against exact DeepFool) live in repro.runtime.cuda_checks,
which ``python -m repro calibrate`` runs too. On a CPU the graph checks are skipped (no CUDA
graphs there); DeepFool's runs. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from repro.cli import apply_overrides  # noqa: E402
from repro.config import load_config  # noqa: E402
from repro.runtime import cuda_checks  # noqa: E402
from repro.runtime.device import select_device  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64, help="training batch")
    parser.add_argument("--deepfool-n", type=int, default=1024)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    args = parser.parse_args(argv)
    config = apply_overrides(load_config(args.config), ["model.pretrained=none"])
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"CUDA paths against eager ones on {name}, torch {torch.__version__}")
    passed = True
    if device.type == "cuda":
        split = cuda_checks.check_split(args.batch, device)
        with cuda_checks.same_kernels():
            passed &= cuda_checks.check_training(config, split, args.batch, device)
            passed &= cuda_checks.check_evaluation(config, split, args.batch, device)
    else:
        print(f"{'training, evaluation graphs':<34}skipped: no CUDA graphs on {name}")
    passed &= cuda_checks.check_deepfool(args.deepfool_n, device)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
