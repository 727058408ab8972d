"""Fast paths equal their simple versions: the vectorized DeepFool against a plain one.

The reference below is the straightforward DeepFool (one backward pass per class, every
class gradient kept, the label masked out with +inf), i.e. the library's version before it
was vectorized. It lives here, not in the library, so the library carries no dead code.
"""
from __future__ import annotations

import pytest
import torch

from repro import attacks
from test_attacks import FAN_IN, _prototype_data, _train, _model, one_thread  # noqa: F401 (fixture)
from tolerance import EPS32, assert_float32_close, relative_perturbation_error


def reference_deepfool(model, inputs, labels, steps, overshoot, overshoot_on, clamp=(0.0, 1.0)):
    adv, total = inputs.clone(), torch.zeros_like(inputs)
    logits = torch.zeros(len(inputs), 10)
    active = torch.arange(len(inputs))
    with attacks.attacking(model):
        for step in range(steps + 1):
            x = adv[active].requires_grad_(True)
            current = model(x)
            logits[active] = current.detach()
            still = current.argmax(1) == labels[active]
            if step == steps or not still.any():
                break
            grads = torch.stack([torch.autograd.grad(current[:, k].sum(), x, retain_graph=True)[0]
                                 for k in range(10)])[:, still]
            active, current, label = active[still], current.detach()[still], labels[active][still]
            rows = torch.arange(len(active))
            f_diff = current - current[rows, label].unsqueeze(1)
            w_diff = grads - grads[label, rows].unsqueeze(0)
            w_norm = w_diff.flatten(2).norm(dim=2).t()
            ratio = f_diff.abs() / w_norm
            ratio[rows, label] = float("inf")
            target = ratio.argmin(1)
            step_r = (f_diff[rows, target].abs() / w_norm[rows, target] ** 2).view(-1, 1, 1, 1) \
                * w_diff[target, rows]
            if overshoot_on == "step":
                adv[active] = (adv[active] + (1 + overshoot) * step_r).clamp(*clamp)
            else:
                total[active] += step_r
                adv[active] = (inputs[active] + (1 + overshoot) * total[active]).clamp(*clamp)
    return adv, logits


@pytest.mark.parametrize("space", ["pixel", "normalized"])
@pytest.mark.parametrize("overshoot_on", ["step", "total"])
def test_vectorized_deepfool_equals_the_simple_one(space, overshoot_on):
    model = _train(_model(space), steps=20)
    pixels, labels = _prototype_data(32, seed=3)
    inputs = model.to_input(pixels)
    adv, logits = attacks.deepfool(model, inputs, labels, 20, 0.02, overshoot_on)
    ref_adv, ref_logits = reference_deepfool(model, inputs, labels, 20, 0.02, overshoot_on)
    # Batched and per-class gradients round differently; each of the 20 steps divides by a
    # gradient norm that carries ~FAN_IN roundings, so the perturbations may differ by up to
    # steps * FAN_IN roundings of their size (measured here: at most 2e-6; a wrong step is O(1)).
    assert relative_perturbation_error(adv, ref_adv, inputs).max() <= 20 * FAN_IN * EPS32
    # Logits of inputs that agree to the bound above, through a net whose longest reduction has
    # FAN_IN terms per layer (3 layers): the perturbation's error plus the forward's roundings.
    assert_float32_close(logits, ref_logits, roundings=20 * FAN_IN + 3 * FAN_IN)
    # DeepFool ends next to a decision boundary: a verdict may differ only at float-level ties.
    top2 = ref_logits.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 1e-4
    assert torch.equal(logits.argmax(1)[clear], ref_logits.argmax(1)[clear])
