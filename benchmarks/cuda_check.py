"""Do the CUDA-only paths compute what the eager ones do? The correctness check of a GPU run
(``bash benchmarks/gpu.sh check``): no test can capture a CUDA graph on a CPU.

    python benchmarks/cuda_check.py --device cuda

- training: one epoch of every defense (``WARMUP`` eager batches, the captured one, two
  replays, an odd last batch that runs eagerly) with CUDA graphs and without, from the same
  weights and random draws: the epoch's loss and accuracy, every weight and batch-norm
  statistic;
- evaluation: FGSM and PGD (random start) chunks graphed and eager: the logits;
- DeepFool: padded active sets (the CUDA default) against the exact ones: success rate and
  median L2. On a GPU these agree to rounding, not bit for bit: kernels are picked per batch
  size, so a sample on a decision boundary may take another step.

For the graph checks TF32 is off and cuDNN deterministic without autotuning, so that graphed
and eager steps run the same kernels and differ by rounding only (AdamW's capturable step
computes its bias corrections on the GPU). A wrong input, a stale buffer or an empty graph
(its replays do nothing) differs by far more than the tolerances. On a CPU the graph checks
are skipped (no CUDA graphs there); DeepFool's runs. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from repro.runs import train  # noqa: E402
from repro.attacks import deepfool  # noqa: E402
from repro.cli import apply_overrides  # noqa: E402
from repro import registry  # noqa: E402
from repro.config import Settings, load_config  # noqa: E402
from repro.runtime.device import prepare_model, select_device  # noqa: E402
from repro.runs.evaluate import attack_logits  # noqa: E402
from repro.runtime.graphs import WARMUP  # noqa: E402
from repro.grid import main_run  # noqa: E402

RTOL, ATOL = 1e-3, 1e-5  # weights after 6 AdamW steps; logits of a fixed model


def _benchmark(name: str):
    """benchmarks/<name>.py as a module (its synthetic data and benchmark model)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark",
                                                  ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings_with(config: dict, graphs: str, *overrides: str) -> Settings:
    return Settings.from_config(apply_overrides(copy.deepcopy(config), [
        f"runtime.cuda_graphs={graphs}", *overrides]))


def verdict(name: str, problems: list[str]) -> bool:
    print(f"{name:<34}{'ok' if not problems else 'FAIL: ' + '; '.join(problems)}")
    return not problems


def compare(what: str, actual, expected) -> list[str]:
    try:
        torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL)
    except AssertionError as error:
        return [f"{what}: {str(error).splitlines()[0]}"]
    return []


def one_epoch(config, graphs: str, run, split, batch, device):
    settings = settings_with(config, graphs)
    model, _, step = train.training_setup(settings, run, device, batch)
    loss, accuracy = train._train_epoch(settings, model, step, split, run, batch, 0, device,
                                        False)
    return torch.tensor([loss, accuracy]), model.state_dict(), dict(step.calls)


def check_training(config, split, batch, device) -> bool:
    passed = True
    for defense in registry.ids("defense"):
        run = main_run(config, defense)
        summary, weights, calls = one_epoch(config, "auto", run, split, batch, device)
        eager_summary, eager_weights, _ = one_epoch(config, "off", run, split, batch, device)
        problems = [] if calls.get("graph", 0) >= 3 else [f"batches ran as {calls}"]
        problems += compare("loss, accuracy", summary, eager_summary)
        for name, tensor in eager_weights.items():
            problems += compare(name, weights[name], tensor)
        passed &= verdict(f"training {defense}", problems[:3])
    return passed


def check_evaluation(config, split, chunk, device) -> bool:
    passed = True
    for attack in ("fgsm", "pgd"):
        logits = {}
        for graphs in ("auto", "off"):
            settings = settings_with(config, graphs, f"evaluation.chunk_size={chunk}",
                                     "protocol.pgd.random_start=true")
            model = prepare_model(settings, "cifar10", device, seed=0).eval()
            found, run_chunk = attack_logits(settings, model, attack, split, 0, device)
            logits[graphs] = (found, dict(run_chunk.calls))
        calls = logits["auto"][1]
        problems = [] if calls.get("graph", 0) >= 2 else [f"chunks ran as {calls}"]
        passed &= verdict(f"evaluation {attack}",
                          problems + compare("logits", logits["auto"][0], logits["off"][0]))
    return passed


def check_deepfool(n: int, device) -> bool:
    attacks = _benchmark("attacks")
    model = attacks.trained_model(32, 20, device).eval()
    pixels, labels = attacks.prototypes(n, 32, 1, device)
    found = {}
    for buckets in (True, False):
        adv, logits = deepfool(model, pixels, labels, buckets=buckets)
        fooled = logits.argmax(1) != labels
        found[buckets] = (fooled.float().mean().item(),
                          (adv - pixels).flatten(1).norm(dim=1)[fooled].median().item())
    (padded_rate, padded_l2), (exact_rate, exact_l2) = found[True], found[False]
    problems = []
    if abs(padded_rate - exact_rate) > max(1 / n, 0.01):
        problems.append(f"success {padded_rate:.3f} padded vs {exact_rate:.3f} exact")
    if abs(padded_l2 - exact_l2) > 0.01 * exact_l2:
        problems.append(f"median L2 {padded_l2:.4f} padded vs {exact_l2:.4f} exact")
    print(f"  DeepFool on {n}: success {padded_rate:.3f} / {exact_rate:.3f}, median L2 "
          f"{padded_l2:.4f} / {exact_l2:.4f} (padded / exact)")
    return verdict("deepfool padded = exact", problems)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64, help="training batch")
    parser.add_argument("--deepfool-n", type=int, default=1024)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    args = parser.parse_args(argv)
    config = apply_overrides(load_config(args.config), ["model.pretrained=none"])
    device = select_device(args.device)
    if device.type == "cuda":  # same kernels on both paths (see the docstring)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"CUDA paths against eager ones on {name}, torch {torch.__version__}")
    passed = True
    if device.type == "cuda":
        # WARMUP eager batches, the captured one, two replays and an odd half batch
        split = _benchmark("train").synthetic_split((WARMUP + 3) * args.batch + args.batch // 2,
                                                    32, device)
        passed &= check_training(config, split, args.batch, device)
        passed &= check_evaluation(config, split, args.batch, device)
    else:
        print(f"{'training, evaluation graphs':<34}skipped: no CUDA graphs on {name}")
    passed &= check_deepfool(args.deepfool_n, device)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
