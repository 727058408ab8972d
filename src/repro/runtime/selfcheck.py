"""The self-check of a CUDA graph: its first replay on new inputs against the same step run
eagerly on the same inputs from the same state (repro.runtime.graphs runs it).

Why: no test can capture a CUDA graph on a CPU, and a graph that is wrong fails silently. An
empty graph (captured on another card's stream) replays nothing; a graph that reads a tensor
replaced after capture, or inputs the caller forgot to copy into its buffers, replays the
recorded batch again. Both give plausible numbers. So every job compares once, on the card it
runs on, and falls back to eager steps when the graph is wrong.

The tolerance is derived as the test suite's are (tests/tolerance.py): a graph replays the
kernels the eager step launches, on the same shapes, so the two differ only where a kernel
sums in no fixed order (atomic adds). A reordered sum of n float32 terms differs by at most n
roundings of its largest partial sum (Higham, "Accuracy and Stability of Numerical
Algorithms", 2002, ch. 4). The longest sum of a step is a layer's fan-in (input channels x
kernel: 4,608 in ResNet-18) and, for a training step, a weight gradient's or a batch-norm
statistic's sum over the batch and every position (batch x height x width); a bf16 step may
round one result the other way on top. A wrong graph moves a value by a sizeable part of its
own scale (an empty graph: the whole step's change), far outside that bound.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7: one rounding of a float32 value of size 1
EPSBF16 = torch.finfo(torch.bfloat16).eps  # 7.8e-3: the same for bfloat16
TINY = 1e-30


def longest_sum(model: nn.Module, input_shape: Sequence[int], training: bool) -> int:
    """Terms of the longest sum a step of ``model`` makes on a batch of ``input_shape``."""
    fan_in = max((module.weight[0].numel() for module in model.modules()
                  if isinstance(module, (nn.Conv2d, nn.Linear))), default=1)
    batch, _, height, width = input_shape
    return max(fan_in, batch * height * width) if training else fan_in


def tolerance(roundings: int, precision: str = "fp32") -> float:
    """Relative tolerance of ``roundings`` float32 roundings, plus one rounding of the result
    in the step's precision."""
    return roundings * EPS32 + (EPSBF16 if precision == "bf16" else EPS32)


@dataclass
class Check:
    """What the first replay is checked on: ``state()`` names the tensors the step changes in
    place (empty for a pure step), ``outputs`` names the step's outputs, ``tolerance(inputs)``
    is the largest relative difference allowed for that batch."""
    state: Callable[[], dict[str, torch.Tensor]]
    outputs: tuple[str, ...]
    tolerance: Callable[[Sequence[torch.Tensor]], float]


def training_check(model: nn.Module, optimizer: torch.optim.Optimizer,
                   precision: str) -> Check:
    """A training step: weights and batch-norm statistics (the model's state dict), the
    optimizer's state, the loss and the logits."""
    def state() -> dict[str, torch.Tensor]:
        named = dict(model.state_dict())  # detached views of the live tensors
        names = {param: name for name, param in model.named_parameters()}
        for param, values in optimizer.state.items():
            named.update({f"optimizer.{names[param]}.{key}": value
                          for key, value in values.items() if torch.is_tensor(value)})
        return named
    return Check(state, ("loss", "logits"),
                 lambda inputs: tolerance(longest_sum(model, inputs[0].shape, True), precision))


def evaluation_check(model: nn.Module) -> Check:
    """An evaluation chunk: the logits at its adversarials (the model does not change)."""
    return Check(dict, ("logits",),
                 lambda inputs: tolerance(longest_sum(model, inputs[0].shape, False)))


def _difference(actual: torch.Tensor, expected: torch.Tensor,
                scale: torch.Tensor) -> torch.Tensor:
    """max |actual - expected| / scale, in float64; a NaN on one side only is infinite."""
    actual, expected = actual.detach().double(), expected.detach().double()
    gap = (actual - expected).abs()
    gap = torch.where(actual.isnan() & expected.isnan(), torch.zeros_like(gap), gap)
    gap = torch.nan_to_num(gap, nan=float("inf"))
    return (gap.max() if gap.numel() else gap.new_zeros(())) / scale.clamp_min(TINY)


def _max_abs(tensor: torch.Tensor) -> torch.Tensor:
    tensor = torch.nan_to_num(tensor.detach().double().abs())
    return tensor.max() if tensor.numel() else tensor.new_zeros(())


def differences(graphed: Sequence[torch.Tensor], eager: Sequence[torch.Tensor],
                output_names: Sequence[str], graphed_state: dict, eager_state: dict,
                before: dict) -> dict[str, float]:
    """Relative difference per output and per state tensor: an output's against its largest
    value; a state tensor's against the change the eager step made to it (at least one
    rounding of its values), so that a step that did nothing differs by 1."""
    found = {name: _difference(g, e, _max_abs(e))
             for name, g, e in zip(output_names, graphed, eager)}
    for name, value in eager_state.items():
        change = torch.maximum(_max_abs(value.double() - before[name].double()),
                               EPS32 * _max_abs(before[name]))
        found[name] = _difference(graphed_state[name], value, change)
    values = torch.stack([value.cpu() for value in found.values()]).tolist()  # one sync
    return dict(zip(found, values))


def snapshot(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def restore(state: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    """Copy ``saved`` into the live tensors, in place: a CUDA graph holds their addresses."""
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(saved[name])
