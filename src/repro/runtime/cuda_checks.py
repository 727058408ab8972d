"""Do the CUDA-only paths compute what the eager ones do? The correctness checks of a GPU:
``python -m repro calibrate`` runs them on CUDA, and so does benchmarks/cuda_check.py (the
first stage of benchmarks/gpu.sh). No test can capture a CUDA graph on a CPU.

- training: one epoch of every defense (the eager warm-up batches, the captured one, the
  checked replay, two more replays and an odd last batch that runs eagerly) with CUDA graphs
  and without, from the same weights and random draws: the epoch's loss and accuracy, every
  weight and batch-norm statistic; and the graphs' own self-check (repro.runtime.selfcheck);
- evaluation: FGSM and PGD (random start) chunks graphed and eager: the logits;
- DeepFool: padded active sets (the CUDA default) against the exact ones: success rate and
  median L2. On a GPU these agree to rounding, not bit for bit: kernels are picked per batch
  size, so a sample on a decision boundary may take another step.

Run the graph checks under :func:`same_kernels`: TF32 off and cuDNN deterministic without
autotuning, so that graphed and eager steps run the same kernels and differ by rounding only
(AdamW's capturable step computes its bias corrections on the GPU). A wrong input, a stale
buffer or an empty graph differs by far more than the tolerances.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from repro import registry
from repro.attacks import deepfool
from repro.config import Settings
from repro.cost import timing
from repro.grid import main_run
from repro.runtime.device import prepare_model
from repro.runtime.graphs import WARMUP

RTOL, ATOL = 1e-3, 1e-5  # weights after 6 AdamW steps; logits of a fixed model
FULL_BATCHES = WARMUP + 5  # eager warm-up, captured, checked replay and three more replays


def apply_overrides(config: dict, overrides) -> dict:
    from repro.cli import apply_overrides as apply

    return apply(copy.deepcopy(config), list(overrides))


@contextmanager
def same_kernels():
    """TF32 off, cuDNN deterministic and not autotuning, for the duration (then as before)."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True,
                                        allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def check_split(batch: int, device):
    """Synthetic CIFAR-shaped images: FULL_BATCHES full batches and an odd half batch."""
    return timing.synthetic_split(FULL_BATCHES * batch + batch // 2, 32, device)


def settings_with(config: dict, graphs: str, *overrides: str) -> Settings:
    return Settings.from_config(apply_overrides(config, [f"runtime.cuda_graphs={graphs}",
                                                         *overrides]))


def verdict(name: str, problems: list[str], say=print) -> bool:
    say(f"{name:<34}{'ok' if not problems else 'FAIL: ' + '; '.join(problems)}")
    return not problems


def compare(what: str, actual, expected) -> list[str]:
    try:
        torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL)
    except AssertionError as error:
        return [f"{what}: {str(error).splitlines()[0]}"]
    return []


def _graph_problems(step, least: int) -> list[str]:
    """The graph ran as it should have: replayed at least ``least`` times, self-check passed."""
    calls, checked = dict(step.calls), step.checked or {}
    problems = [] if calls.get("graph", 0) >= least else [f"batches ran as {calls}"]
    if checked.get("self_check") != "passed":
        problems.append(f"self-check {checked.get('self_check', 'not run')} "
                        f"({checked.get('self_check_worst')}: "
                        f"{checked.get('self_check_difference')})")
    return problems


def one_epoch(config, graphs: str, run, split, batch, device):
    from repro.runs import train

    settings = settings_with(config, graphs)
    model, _, step = train.training_setup(settings, run, device, batch)
    loss, accuracy = train._train_epoch(settings, model, step, split, run, batch, 0, device,
                                        False)
    return torch.tensor([loss, accuracy]), model.state_dict(), step


def check_training(config, split, batch, device, say=print, defenses=None) -> bool:
    passed = True
    for defense in defenses or registry.ids("defense"):
        run = main_run(config, defense)
        summary, weights, step = one_epoch(config, "auto", run, split, batch, device)
        eager_summary, eager_weights, _ = one_epoch(config, "off", run, split, batch, device)
        problems = _graph_problems(step, 3)
        problems += compare("loss, accuracy", summary, eager_summary)
        for name, tensor in eager_weights.items():
            problems += compare(name, weights[name], tensor)
        passed &= verdict(f"training {defense}", problems[:3], say)
    return passed


def check_evaluation(config, split, chunk, device, say=print) -> bool:
    from repro.runs.evaluate import attack_logits

    passed = True
    for attack in ("fgsm", "pgd"):
        logits = {}
        for graphs in ("auto", "off"):
            settings = settings_with(config, graphs, f"evaluation.chunk_size={chunk}",
                                     "protocol.pgd.random_start=true")
            model = prepare_model(settings, "cifar10", device, seed=0).eval()
            logits[graphs] = attack_logits(settings, model, attack, split, 0, device)
        problems = _graph_problems(logits["auto"][1], 2)
        passed &= verdict(f"evaluation {attack}",
                          problems + compare("logits", logits["auto"][0], logits["off"][0]), say)
    return passed


def check_deepfool(n: int, device, say=print) -> bool:
    model = timing.trained_model(32, 20, device)
    pixels, labels = timing.prototypes(n, 32, 1, device)
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
    say(f"  DeepFool on {n}: success {padded_rate:.3f} / {exact_rate:.3f}, median L2 "
        f"{padded_l2:.4f} / {exact_l2:.4f} (padded / exact)")
    return verdict("deepfool padded = exact", problems, say)
