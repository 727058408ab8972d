import pytest
import torch
import torch.nn.functional as F

from repro import data
from repro.config import RunSpec
from repro.defenses import fgsm_budget, pgd_budget, training_attack, training_loss
from repro.defenses.cl import embedding_distance
from repro.defenses.trades import trades_pgd_budget
from repro.models.resnet import build_model
from tolerance import assert_float32_close

# The longest reduction in a weight gradient of ResNet-18 on a batch of 16 MNIST digits: conv1's
# weight sums over 16 images x 14 x 14 output positions. Two ways of computing the same loss
# (an extra term times zero, another pass order) may differ by that many roundings.
GRAD_ROUNDINGS = 16 * 14 * 14


@pytest.fixture
def batch(make_settings):
    def make(*overrides, dataset="mnist"):
        settings = make_settings(*overrides)
        model = build_model(settings, dataset).train()
        pixels, labels = next(data.batches(data.load(settings, dataset).train, 16))
        return settings, model, model.to_input(pixels), labels
    return make


def _loss_and_grads(model, inputs, labels, run, protocol, seed=0):
    model.zero_grad()
    loss, _ = training_loss(model, inputs, labels, run, protocol,
                            torch.Generator().manual_seed(seed))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _fresh(model, state):
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("overrides", [(), ("protocol.cl.distance=euclidean",
                                            "protocol.cl.extra_adv_pass=false")])
def test_cl_with_beta_zero_equals_adversarial_training(batch, attack, overrides):
    settings, model, inputs, labels = batch(*overrides, "protocol.pgd.steps=3")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    at_loss, at_grads = _loss_and_grads(model, inputs, labels, RunSpec("mnist", f"at-{attack}", 0),
                                        settings.protocol)
    cl = RunSpec("mnist", f"cl-{attack}", 0, "embed3", 0.0)
    cl_loss, cl_grads = _loss_and_grads(_fresh(model, state), inputs, labels, cl,
                                        settings.protocol)
    assert_float32_close(cl_loss, at_loss, roundings=16)  # a mean over 16 per-sample losses
    for cl_grad, at_grad in zip(cl_grads, at_grads):
        assert_float32_close(cl_grad, at_grad, roundings=GRAD_ROUNDINGS)


@pytest.mark.parametrize("inner", ["ce", "kl"])
def test_trades_with_beta_zero_equals_clean_cross_entropy(batch, inner):
    settings, model, inputs, labels = batch(
        "protocol.trades.beta=0", f"protocol.trades.inner={inner}", "protocol.trades_pgd.steps=2")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss, grads = _loss_and_grads(model, inputs, labels, RunSpec("mnist", "trades-pgd", 0),
                                  settings.protocol)
    _fresh(model, state).zero_grad()
    clean = F.cross_entropy(model(inputs), labels)
    clean.backward()
    assert_float32_close(loss, clean.detach(), roundings=16)
    for grad, param in zip(grads, model.parameters()):
        assert_float32_close(grad, param.grad, roundings=GRAD_ROUNDINGS)


def test_trades_regularizer_is_positive_with_beta(batch):
    settings, model, inputs, labels = batch("protocol.trades_pgd.steps=2")
    loss, _ = training_loss(model, inputs, labels, RunSpec("mnist", "trades-pgd", 0),
                            settings.protocol, torch.Generator().manual_seed(0))
    assert loss > F.cross_entropy(model(inputs), labels)


@pytest.mark.parametrize("budget,epsilon", [(fgsm_budget, 0.031), (pgd_budget, 0.031),
                                            (trades_pgd_budget, 8 / 255)])
def test_training_attacks_stay_in_their_ball(batch, budget, epsilon):
    settings, model, inputs, labels = batch("protocol.pgd.steps=3", "protocol.trades_pgd.steps=3")
    adv = training_attack(model, inputs, labels, budget(settings.protocol), settings.protocol)
    assert (adv - inputs).abs().max() <= epsilon + 1e-6
    assert (adv - inputs).abs().max() > 0.5 * epsilon
    assert model.training


def test_standard_protocol_training_attack_stays_in_pixel_range(batch):
    settings, model, inputs, labels = batch(
        "protocol.attack_space=pixel", "protocol.pgd.random_start=true", "protocol.pgd.steps=2")
    adv = training_attack(model, inputs, labels, pgd_budget(settings.protocol), settings.protocol,
                          generator=torch.Generator().manual_seed(0))
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - inputs).abs().max() <= settings.protocol.epsilon + 1e-6


def test_embedding_distances():
    clean = torch.zeros(2, 4, 1, 1)
    adv = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view(2, 4, 1, 1)
    assert embedding_distance(adv, clean, "mse").item() == pytest.approx(25 / 8)
    assert embedding_distance(adv, clean, "euclidean").item() == pytest.approx(5 / 2)


def test_cl_loss_grows_with_beta(batch):
    settings, model, inputs, labels = batch()
    losses = [training_loss(model, inputs, labels, RunSpec("mnist", "cl-fgsm", 0, "embed5", b),
                            settings.protocol)[0].item() for b in (0.0, 100.0)]
    assert losses[1] > losses[0]
