"""Float tolerances derived from what a test compares, not from one machine's luck.

Two float32 computations of the same quantity that differ only in the order of their operations
(another thread count, another CPU's vector kernels, a batched against a looped gradient) agree
to within a few float32 roundings per operation, each worth at most ``EPS32`` times the size of
the values involved. The worst case for a sum of n terms is n roundings (Higham, "Accuracy and
Stability of Numerical Algorithms", 2002, ch. 4), so a test states how many roundings separate
the two sides and the tolerance follows. A real bug (a wrong class, sign, step or scale) moves
values by a sizeable fraction of their magnitude, far outside these bounds.
"""
from __future__ import annotations

import torch

# one rounding of a float32 / bfloat16 value of size 1; the library's self-check of CUDA graphs
# derives its tolerance the same way (repro.runtime.selfcheck)
from repro.runtime.selfcheck import EPS32, EPSBF16  # noqa: F401


def assert_float32_close(actual: torch.Tensor, expected: torch.Tensor, roundings: int) -> None:
    """``actual`` equals ``expected`` up to ``roundings`` float32 roundings of the largest value
    compared (relative to each value, and absolute on the scale of the whole tensor, so that
    values near zero, whose rounding error is set by the large terms they came from, pass)."""
    tol = roundings * EPS32
    scale = expected.detach().abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * max(scale, 1e-30))


def relative_perturbation_error(adv: torch.Tensor, reference: torch.Tensor,
                                inputs: torch.Tensor) -> torch.Tensor:
    """Per sample: ||adv - reference|| / ||reference - inputs||, the error of an attack's
    perturbation relative to its size. An unperturbed sample (reference == inputs) is measured
    against one rounding of its input instead, so it must stay put to float precision."""
    error = (adv - reference).flatten(1).norm(dim=1)
    size = (reference - inputs).flatten(1).norm(dim=1)
    floor = EPS32 * inputs.flatten(1).norm(dim=1)
    return error / torch.maximum(size, floor)
