"""The FLOP count of a training image follows from the passes each defense makes.

Counting the pipeline's own training step checks the fast paths' promise that attacks take
no weight gradients: one attack step must cost a forward and an input backward (about two
forward passes), not a full training step (about three).
"""
from __future__ import annotations

import pytest
import torch

from repro.config import RunSpec
from repro.cost.flops import _CountFlops, card_peak_tflops, training_flops
from repro.models.resnet import build_model


def forward_flops(settings, dataset="cifar10") -> float:
    model = build_model(settings, dataset).eval()
    with torch.no_grad(), _CountFlops() as counter:
        model(torch.rand(2, 3, 32, 32))
    return counter.flops / 2


def test_attack_steps_cost_a_forward_and_an_input_backward(make_settings):
    settings = make_settings("protocol.pgd.steps=5")
    forward = forward_flops(settings)
    standard = training_flops(settings, RunSpec("cifar10", "standard", 0))
    fgsm = training_flops(settings, RunSpec("cifar10", "at-fgsm", 0))
    pgd = training_flops(settings, RunSpec("cifar10", "at-pgd", 0))
    # forward + input and weight gradients (the first convolution needs no input gradient)
    assert 2.8 * forward < standard < 3 * forward
    # one step: forward + input gradient only; no weight gradients while attacking
    assert fgsm - standard == pytest.approx(2 * forward, rel=0.03)
    assert pgd - standard == pytest.approx(5 * (fgsm - standard))


def test_contrastive_passes_are_counted(make_settings):
    settings = make_settings()
    standard = training_flops(settings, RunSpec("cifar10", "standard", 0))
    fgsm = training_flops(settings, RunSpec("cifar10", "at-fgsm", 0))
    late = training_flops(settings, RunSpec("cifar10", "cl-fgsm", 0, "embed5", 1.0))
    early = training_flops(settings, RunSpec("cifar10", "cl-fgsm", 0, "embed1", 1.0))
    # the paper's code: AT's attack and pass, plus the clean and the adversarial embedding in
    # passes of their own (with backward) that stop at the tapped layer (embed5: all but fc)
    assert late == pytest.approx(fgsm + 2 * standard, rel=0.01)
    assert early < late
    without_extra = make_settings("protocol.cl.extra_adv_pass=false")
    assert training_flops(without_extra, RunSpec("cifar10", "cl-fgsm", 0, "embed5", 1.0)) \
        < late


def test_card_peaks_by_name(monkeypatch):
    assert card_peak_tflops("cpu", "fp32") is None
    for name, fp32, bf16 in (("NVIDIA H100 80GB HBM3", 494.7, 989.4),
                             ("NVIDIA H100 PCIe", 378.0, 756.0),
                             ("NVIDIA H200", 494.7, 989.4)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert (card_peak_tflops("cuda", "fp32"), card_peak_tflops("cuda", "bf16")) \
            == (fp32, bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Some Future GPU")
    assert card_peak_tflops("cuda", "fp32") is None
