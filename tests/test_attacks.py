"""Properties of the attacks on a small trained classifier (16×16 synthetic images, CPU).

The model is the pipeline's own Classifier wrapper around a tiny network, trained
for a few dozen steps on seeded class prototypes, so that it classifies most inputs
correctly and the attacks have something to break. Reference implementations are
torchattacks and foolbox, run on the same model and the same inputs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro import attacks
from repro.config import DeepFoolConfig, Protocol, Settings
from repro.data import normalization
from repro.models.resnet import Classifier
from tolerance import EPS32, assert_float32_close, relative_perturbation_error

SIZE, N_TEST = 16, 48
EPS = 8 / 255
FAN_IN = 16 * 3 * 3  # the tiny net's longest reduction: a 3x3 convolution over 16 channels


def _model(attack_space: str, seed: int = 0) -> Classifier:
    """The pipeline's Classifier (normalization, taps, input space) around a tiny network
    that has the ResNet-18 stage names: attacks see the same wrapper as in the pipeline, and
    the whole file, torchattacks' per-sample DeepFool included, runs in seconds on a CPU."""
    torch.manual_seed(seed)
    net = nn.Module()
    net.conv1, net.bn1, net.relu = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()
    net.maxpool = nn.MaxPool2d(2)
    net.layer1 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
    net.layer2 = net.layer3 = net.layer4 = nn.Identity()
    net.avgpool, net.fc = nn.AdaptiveAvgPool2d(2), nn.Linear(128, 10)
    mean, std = normalization(Settings.from_config({}), "cifar10")
    return Classifier(net, mean, std, attack_space)


def _prototype_data(n: int, seed: int):
    """Seeded smooth class prototypes plus noise, in [0, 1] pixels (like repro.data's stand-in)."""
    protos = F.interpolate(torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(7)),
                           size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    noise = torch.rand(n, 3, SIZE, SIZE, generator=generator)
    return 0.6 * protos[labels] + 0.4 * noise, labels


def _train(model, steps: int = 40, batch: int = 32):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        pixels, labels = _prototype_data(batch, seed=100 + step)
        loss = F.cross_entropy(model(model.to_input(pixels)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: one thread avoids OpenMP overhead, and on a shared machine the
    spinning of a second thread can slow the whole file down tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pixel_model():
    """A trained classifier attacked on [0, 1] pixels (the standard protocol)."""
    return _train(_model("pixel"))


@pytest.fixture(scope="module")
def normalized_model():
    """The same training, attacked on normalized tensors (the paper's protocol)."""
    return _train(_model("normalized"))


@pytest.fixture(scope="module")
def batch():
    return _prototype_data(N_TEST, seed=1)


def _correct(model, inputs, labels):
    with torch.no_grad():
        return model(inputs).argmax(1) == labels


def test_the_small_model_is_trained(pixel_model, batch):
    assert _correct(pixel_model, *batch).float().mean() >= 0.8


@pytest.mark.parametrize("name", ["fgsm", "pgd", "pgd-random"])
def test_linf_attacks_stay_in_the_ball_and_the_image(pixel_model, batch, name):
    x, y = batch
    if name == "fgsm":
        adv = attacks.fgsm(pixel_model, x, y, EPS, clip=(0.0, 1.0))
    else:
        adv = attacks.pgd(pixel_model, x, y, EPS, 2 / 255, 5, clip=(0.0, 1.0),
                          random_start=name == "pgd-random",
                          generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= EPS + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > EPS / 2  # it did move
    assert not _correct(pixel_model, adv, y).all()


def test_normalized_protocol_is_not_clipped_but_stays_in_the_ball(normalized_model, batch):
    x, y = batch
    inputs = normalized_model.to_input(x)
    adv = attacks.pgd(normalized_model, inputs, y, 0.031, 0.008, 5)
    assert (adv - inputs).abs().max() <= 0.031 + 1e-6
    assert inputs.min() < 0  # normalized tensors leave [0, 1]; no clipping brings them back


def test_fgsm_equals_torchattacks(pixel_model, batch):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch
    ours = attacks.fgsm(pixel_model, x, y, EPS, clip=(0.0, 1.0))
    theirs = torchattacks.FGSM(pixel_model, eps=EPS)(x, y)
    # Same gradient, same sign: only the step and the clamp round (a few roundings of values <= 1).
    assert_float32_close(ours, theirs, roundings=4)


def test_pgd_without_random_start_matches_a_reference_loop(pixel_model, batch):
    x, y = batch
    eps, alpha, steps = EPS, 2 / 255, 5
    reference = x.clone()
    for _ in range(steps):
        reference.requires_grad_(True)
        loss = F.cross_entropy(pixel_model(reference), y)
        (grad,) = torch.autograd.grad(loss, reference)
        reference = reference.detach() + alpha * grad.sign()
        reference = (x + (reference - x).clamp(-eps, eps)).clamp(0, 1)
    ours = attacks.pgd(pixel_model, x, y, eps, alpha, steps, clip=(0.0, 1.0))
    assert_float32_close(ours, reference, roundings=4 * steps)  # step, projection, clamp per step


def test_pgd_random_start_is_seeded_and_differs_from_the_fixed_start(pixel_model, batch):
    x, y = batch

    def run(seed):
        return attacks.pgd(pixel_model, x, y, EPS, 2 / 255, 2, random_start=True,
                           clip=(0.0, 1.0), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert not torch.equal(run(0), attacks.pgd(pixel_model, x, y, EPS, 2 / 255, 2,
                                                clip=(0.0, 1.0)))


def test_deepfool_flips_nearly_every_correct_input(pixel_model, batch):
    x, y = batch
    correct = _correct(pixel_model, x, y)
    adv, logits = attacks.deepfool(pixel_model, x, y, steps=20, overshoot_on="total")
    flipped = logits.argmax(1) != y
    assert flipped[correct].float().mean() >= 0.95
    assert torch.equal(adv[~correct], x[~correct])  # already wrong: left alone
    assert adv.min() >= 0 and adv.max() <= 1


def test_deepfool_norms_agree_with_foolbox(pixel_model, batch):
    """Same algorithm as foolbox's L2DeepFoolAttack with overshoot on the total perturbation.

    The one deliberate difference is foolbox's +1e-4 (logit units) added to every step's
    distance, which lengthens each step by 1e-4/‖∇(f_k − f_y)‖: a relative change well under
    1% for logit gaps of order 1. Float rounding can still change a near-tied choice of the
    target class for a few samples, so the check is on the median and on 90% of the samples.
    """
    fb = pytest.importorskip("foolbox")
    x, y = batch
    correct = _correct(pixel_model, x, y)
    adv, logits = attacks.deepfool(pixel_model, x, y, steps=20, overshoot=0.02,
                                   overshoot_on="total")
    attack = fb.attacks.L2DeepFoolAttack(steps=20, candidates=None, overshoot=0.02)
    theirs = attack.run(fb.PyTorchModel(pixel_model, bounds=(0, 1)), x, y)
    both = correct & (logits.argmax(1) != y) & _correct(pixel_model, theirs, y).logical_not()
    assert both.float().sum() >= 0.9 * correct.float().sum()
    ours_norm = (adv - x).flatten(1).norm(dim=1)[both]
    their_norm = (theirs - x).flatten(1).norm(dim=1)[both]
    relative = (ours_norm - their_norm).abs() / their_norm
    assert relative.median() < 0.01
    assert (relative < 0.05).float().mean() >= 0.9


def test_deepfool_step_overshoot_agrees_with_torchattacks(pixel_model, batch):
    """``overshoot_on="step"`` is the paper's (and torchattacks') per-step overshoot."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch
    x, y = x[:16], y[:16]  # torchattacks loops over samples: keep it short
    adv, logits = attacks.deepfool(pixel_model, x, y, steps=20, overshoot_on="step")
    theirs = torchattacks.DeepFool(pixel_model, steps=20, overshoot=0.02)(x, y)
    # torchattacks runs one sample at a time: other kernels, other rounding. As in
    # test_fastpaths: each of the 20 steps carries ~FAN_IN roundings (measured: at most 1e-6).
    assert relative_perturbation_error(adv, theirs, x).max() <= 20 * FAN_IN * EPS32


def test_deepfool_reports_the_logits_its_stop_rule_used(pixel_model, batch):
    """The verdict (success or not) comes from logits the attack itself computed on the
    returned inputs, so the evaluation reports exactly what the stop rule decided."""
    x, y = batch
    seen = []
    hook = pixel_model.register_forward_hook(
        lambda module, args, out: seen.append(out.detach().clone()))
    try:
        adv, logits = attacks.deepfool(pixel_model, x, y, steps=2, overshoot_on="total")
    finally:
        hook.remove()
    rows = torch.cat(seen)
    assert all((rows == row).all(1).any() for row in logits)  # bitwise one of its own passes
    with torch.no_grad():
        # the active subset against the whole batch: other kernels, 3 layers of FAN_IN sums
        assert_float32_close(logits, pixel_model(adv), roundings=3 * FAN_IN)
    _, clean = attacks.deepfool(pixel_model, x, y, steps=0)
    assert torch.equal(clean.argmax(1) != y, ~_correct(pixel_model, x, y))


def test_run_attack_returns_the_deepfool_logits(pixel_model, batch):
    x, y = batch
    protocol = Protocol(attack_space="pixel", deepfool=DeepFoolConfig(3, 0.02, "total"))
    adv, logits = attacks.run_attack(pixel_model, "deepfool", x, y, protocol)
    expected = attacks.deepfool(pixel_model, x, y, protocol.deepfool.steps,
                                protocol.deepfool.overshoot, protocol.deepfool.overshoot_on)
    assert torch.equal(adv, expected[0]) and torch.equal(logits, expected[1])


ATTACKS = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, EPS, clip=(0.0, 1.0)),
    "pgd": lambda m, x, y: attacks.pgd(m, x, y, EPS, 2 / 255, 3, clip=(0.0, 1.0)),
    "pgd-kl": lambda m, x, y: attacks.pgd(m, x, y, EPS, 2 / 255, 3, loss="kl",
                                          start=x + 0.001 * torch.randn_like(x)),
    "deepfool": lambda m, x, y: attacks.deepfool(m, x, y, steps=3)[0],
}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("training", [True, False])
def test_attacks_restore_mode_and_requires_grad_and_leave_bn_alone(pixel_model, batch, name,
                                                                   training):
    x, y = batch
    params = list(pixel_model.parameters())
    for param in params:
        param.grad = None  # torchattacks' DeepFool leaves parameter gradients behind
    params[0].requires_grad_(False)  # a frozen parameter must stay frozen
    pixel_model.train(training)
    stats = pixel_model.resnet.bn1.running_mean.clone()
    try:
        ATTACKS[name](pixel_model, x[:8], y[:8])
        assert pixel_model.training is training
        assert [p.requires_grad for p in params] == [False] + [True] * (len(params) - 1)
        assert all(p.grad is None for p in params)
        assert torch.equal(pixel_model.resnet.bn1.running_mean, stats)  # attacked in eval mode
    finally:
        params[0].requires_grad_(True)
        pixel_model.eval()


@pytest.mark.parametrize("name,most_calls", [("fgsm", 1), ("pgd", 3), ("deepfool", 2 * 3 + 1)])
def test_attacks_are_batched(pixel_model, batch, name, most_calls):
    """The number of forward passes does not grow with the batch: no per-sample loop."""
    x, y = batch
    sizes = []
    hook = pixel_model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        ATTACKS[name](pixel_model, x, y)
    finally:
        hook.remove()
    assert len(sizes) <= most_calls and sizes[0] == len(x)
