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


def test_buckets_pad_to_powers_of_two_capped_at_the_chunk():
    for full in (1, 5, 48):
        for n in range(1, full + 1):
            active = torch.arange(full - n, full)
            padded = attacks.bucket(active, full)
            assert len(padded) == min(full, 1 << (n - 1).bit_length()) >= n
            assert torch.equal(padded[:n], active) and set(padded[n:].tolist()) <= {full - n}


@pytest.mark.parametrize("overshoot_on", ["step", "total"])
def test_bucketed_deepfool_equals_the_unpadded_one(overshoot_on):
    """Padding the active set (what DeepFool does on CUDA) changes the shapes the model sees,
    not the result. In float64 the padded passes agree with the unpadded ones to ~1e-15, so
    a tolerance of 1e-9 leaves room for any CPU's kernels and still catches a wrong row."""
    model = _train(_model("pixel"), steps=20).double()
    pixels, labels = _prototype_data(48, seed=3)
    inputs = model.to_input(pixels.double())
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        adv, logits = attacks.deepfool(model, inputs, labels, 20, 0.02, overshoot_on,
                                       buckets=True)
    finally:
        hook.remove()
    plain_adv, plain_logits = attacks.deepfool(model, inputs, labels, 20, 0.02, overshoot_on,
                                               buckets=False)
    assert len(sizes) > 3 and set(sizes) <= {48, 32, 16, 8, 4, 2, 1}
    torch.testing.assert_close(adv, plain_adv, rtol=0, atol=1e-9)
    torch.testing.assert_close(logits, plain_logits, rtol=0, atol=1e-9)
    assert torch.equal(logits.argmax(1), plain_logits.argmax(1))
    assert (logits.argmax(1) != labels).float().mean() > 0.8  # the attack did its work


def test_deepfool_pads_only_on_cuda_by_default():
    model = _train(_model("pixel"), steps=5)
    pixels, labels = _prototype_data(48, seed=3)
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        attacks.deepfool(model, model.to_input(pixels), labels, 20, 0.02)
    finally:
        hook.remove()
    assert any(size not in {48, 32, 16, 8, 4, 2, 1} for size in sizes)  # CPU: exact sizes
