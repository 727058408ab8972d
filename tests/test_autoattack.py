"""AutoAttack from torchattacks' components: strength, threat model, RNG isolation, and the
masking checks on a planted case. A small CNN (with batch norm, like ResNet) trained on the
synthetic stand-in keeps every test to seconds."""
import dataclasses
import threading

import pytest
import torch
from torch import nn

from repro import data
from repro.attacks import pgd
from repro.runs.audit import audit_autoattack, audit_epsilon
from repro.attacks.autoattack import ORIGINAL_BUDGET, Budget, autoattack
from repro.config import RunSpec
from repro.report.masking import FAILS, HOLDS, run_checks

EPSILON = 0.06  # where PGD-20 leaves this model part of its accuracy
SMALL = Budget(apgd_ce_steps=20, apgd_t_steps=20, apgd_t_targets=2, fab_t_steps=10,
               fab_t_targets=2, square_queries=100)
RUN = RunSpec("cifar10", "standard", 0)


class SmallNet(nn.Module):
    """Pixel-space classifier with the interface the audit expects (``to_input``)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.MaxPool2d(4), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))

    def to_input(self, pixels):
        return pixels

    def forward(self, inputs):
        return self.net(inputs)


class ZeroGradients(nn.Module):
    """The planted case: the same predictions, but every input gradient is exactly 0."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def to_input(self, pixels):
        return pixels

    def forward(self, inputs):
        return self.model(inputs.detach()) + 0 * inputs.flatten(1).sum(1, keepdim=True)


class Normalized(nn.Module):
    """The model seen from normalized space, as in the paper's protocol (mean 0.5, std 0.25)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def to_input(self, pixels):
        return (pixels - 0.5) / 0.25

    def forward(self, inputs):
        return self.model(inputs * 0.25 + 0.5)


@pytest.fixture(autouse=True)
def _threads():
    """One intra-op thread (overrides conftest's two): these tensors are tiny, and on a busy
    machine two spinning OpenMP threads made FAB's 900 small steps ten times slower."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(settings, trained SmallNet, test split) on the synthetic CIFAR-10 stand-in."""
    from conftest import TINY
    from repro.config import Settings

    settings = Settings.from_config({**TINY, "protocol": {"attack_space": "pixel",
                                                          "epsilon": EPSILON}})
    splits = data.load(settings, "cifar10")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    images, labels = splits.train.images.float() / 255, splits.train.labels
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return settings, model.eval(), splits.test.head(32)


def _pixels(split):
    return split.images.float() / 255, split.labels


def test_autoattack_is_at_least_as_strong_as_pgd20(small):
    settings, model, test = small
    x, y = _pixels(test)
    found = autoattack(model, x, y, EPSILON, True, SMALL, seed=0)
    pgd_correct = model(pgd(model, x, y, EPSILON, 0.008, 20, clip=(0, 1))).argmax(1) == y
    aa_correct = found["logits"].argmax(1) == y
    assert 10 < 100 * pgd_correct.float().mean() < 95  # PGD neither fails nor wins outright
    assert aa_correct.float().mean() <= pgd_correct.float().mean()
    # inside the threat model: the ε-ball and the [0, 1] box
    assert (found["adversarial"] - x).abs().max() <= EPSILON + 1e-6
    assert found["adversarial"].min() >= 0 and found["adversarial"].max() <= 1
    # fooled_by agrees with the final verdict: robust exactly where no component succeeded
    clean_correct = model(x).argmax(1) == y
    assert torch.equal(aa_correct, clean_correct & (found["fooled_by"] < 0))
    assert not model.training  # batch norm left in eval mode


def test_normalized_inputs_are_attacked_without_a_box(small):
    """The paper's threat model: the ε-ball around normalized tensors, never clamped to
    [0, 1] (torchattacks' own clamp would wipe every negative value)."""
    _, model, test = small
    normalized = Normalized(model)
    x, y = _pixels(test)
    inputs = normalized.to_input(x)
    epsilon = EPSILON / 0.25  # the same ball as in pixel space
    found = autoattack(normalized, inputs, y, epsilon, False, SMALL, seed=0)
    assert inputs.min() < -1  # far outside [0, 1]: a clamp would show
    assert (found["adversarial"] - inputs).abs().max() <= epsilon * (1 + 1e-5)
    assert (found["fooled_by"] >= 0).any()


def test_same_seed_same_result_and_the_global_rng_untouched(small):
    _, model, test = small
    x, y = _pixels(test)
    budget = Budget(5, 3, 2, 3, 2, 50)
    state = torch.get_rng_state()
    first = autoattack(model, x, y, EPSILON, True, budget, seed=3)["adversarial"]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(autoattack(model, x, y, EPSILON, True, budget, seed=3)["adversarial"],
                       first)


def test_concurrent_jobs_neither_disturb_nor_are_disturbed(small):
    """Two attacks and a job that reseeds and draws from torch's global RNG, as threads of one
    process (Snakemake's local jobs): each attack equals its lone run, and the other job's
    draws equal what it draws alone."""
    _, model, test = small
    x, y = _pixels(test)
    budget = Budget(5, 3, 2, 3, 2, 300)
    alone = {seed: autoattack(model, x, y, EPSILON, True, budget, seed)["adversarial"]
             for seed in (0, 1)}
    torch.manual_seed(7)
    expected = torch.rand(20, 100)
    results, draws, done = {}, [], threading.Event()

    def attack(seed):
        results[seed] = autoattack(model, x, y, EPSILON, True, budget, seed)["adversarial"]

    def other_job():
        while not done.is_set():
            torch.manual_seed(7)
            draws.append(torch.stack([torch.rand(100) for _ in range(20)]))

    threads = [threading.Thread(target=attack, args=(seed,)) for seed in (0, 1)]
    other = threading.Thread(target=other_job)
    other.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    other.join()
    assert len(draws) > 1
    assert all(torch.equal(drawn, expected) for drawn in draws)
    assert all(torch.equal(results[seed], alone[seed]) for seed in (0, 1))


def test_masking_checks_flag_zeroed_gradients(small):
    """PGD cannot move on a model whose gradients are 0; Square, gradient-free, fools it.
    At the original budget the checks name the model and fail; the real model passes."""
    settings, model, test = small
    test = test.head(8)
    # ε large enough for Square to fool every point early; the real model at a small budget
    # (its gradient attacks do the work there, so Square finds nothing of its own)
    planted = dataclasses.replace(settings, protocol=dataclasses.replace(
        settings.protocol, epsilon=0.15))
    real = dataclasses.replace(settings, audit=dataclasses.replace(settings.audit, autoattack={
        "apgd_ce": {"steps": 20}, "apgd_t": {"steps": 5, "targets": 1},
        "fab_t": {"steps": 5, "targets": 1}, "square": {"queries": 20}}))
    verdicts = {}
    for name, candidate, at in (("real", model, real), ("planted", ZeroGradients(model), planted)):
        aa = {**audit_autoattack(at, RUN, candidate, test), "run": RUN.as_dict(),
              "n": len(test)}
        assert aa["original_budget"] == (name == "planted")
        curve = {**audit_epsilon(at, RUN, candidate, test), "run": RUN.as_dict()}
        verdicts[name] = {row["check"]: row for row in run_checks([aa], [curve], 1.0, 10.0)}
    planted = verdicts["planted"]
    assert planted["gradient-free"]["verdict"] == FAILS
    assert planted["gradient-free"]["model"] == "cifar10 standard seed 0"
    assert "Square fooled" in planted["gradient-free"]["numbers"]
    assert planted["epsilon"]["verdict"] == FAILS  # PGD stays at clean accuracy at any ε
    assert verdicts["real"]["gradient-free"]["verdict"] == HOLDS
    assert verdicts["real"]["epsilon"]["verdict"] == HOLDS


def test_budgets_default_to_the_original_autoattack():
    assert ORIGINAL_BUDGET == Budget(100, 100, 9, 100, 9, 5000)
    assert ORIGINAL_BUDGET.is_original and not SMALL.is_original


# ---- the official AutoAttack (fra31/auto-attack, PyPI pyautoattack) as a referee ----

def test_official_autoattack_agrees_image_by_image(small):
    """Same model, images, threat model and budget: the robust accuracies agree within the
    seed spread, and no image is fooled by one implementation in every seed and by the other
    in none (the bound on seed noise: repro.attacks.official.agreement)."""
    from repro.attacks.official import agreement

    _, model, test = small
    model.zero_grad(set_to_none=True)  # the fixture's training left gradients
    x, y = _pixels(test)
    result = agreement(model, x, y, EPSILON, True, SMALL, seeds=[0, 1])
    means = result["mean_robust_top1"]
    assert 10 < means["official"] < 95  # neither side fails nor wins outright
    assert abs(means["repro"] - means["official"]) <= result["seed_spread"] + 100 / len(y)
    assert result["beyond_seed_noise"] == {"fooled_only_by_repro": [],
                                           "fooled_only_by_official": []}
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_the_agreement_bound_catches_a_weaker_cascade(small):
    """The criterion can fail: APGD-CE cut to one step and the other components to nothing
    leaves images that the official AutoAttack fools at every seed and this one at none."""
    from repro.attacks.official import official_autoattack

    _, model, test = small
    x, y = _pixels(test)
    weak = Budget(1, 1, 1, 1, 1, 1)
    ours = autoattack(model, x, y, EPSILON, True, weak, seed=0)["logits"].argmax(1) == y
    official = [official_autoattack(model, x, y, EPSILON, True, SMALL, seed)["logits"]
                .argmax(1) == y for seed in (0, 1)]
    assert (ours & ~official[0] & ~official[1]).sum() >= 2


def test_official_run_leaves_the_global_rng_and_the_model_alone(small):
    """The official code reseeds torch's global RNG and attacks in whatever mode it finds the
    model; the referee restores the RNG state and attacks in eval mode with frozen weights."""
    from repro.attacks.official import official_autoattack

    _, model, test = small
    x, y = _pixels(test.head(8))
    model.zero_grad(set_to_none=True)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]  # as an earlier test left them
    state = torch.get_rng_state()
    try:
        found = official_autoattack(model, x, y, EPSILON, True, Budget(3, 2, 1, 2, 1, 10), 0)
    finally:
        training = model.training
        model.eval()
    assert torch.equal(torch.get_rng_state(), state)
    assert training and all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert (found["adversarial"] - x).abs().max() <= EPSILON + 1e-6


def test_components_use_the_official_settings():
    """Square's step schedule (p) and APGD's step-size checkpoints as the official code has
    them: torchattacks' default resc_schedule=True compresses Square's schedule to its query
    budget; APGD's checkpoints follow the n_iter it was built with."""
    from pyautoattack.square import SquareAttack

    from repro.attacks.autoattack import UnitBox, components
    from repro.attacks.official import referee

    boxed = UnitBox(SmallNet().eval(), 0.0, 1.0)
    ours = components(boxed, 0.1, ORIGINAL_BUDGET, seed=0)[3]
    official = SquareAttack(boxed, eps=0.1, p_init=.8, n_queries=5000, resc_schedule=False)
    assert ours.p_init == official.p_init == 0.8
    assert [ours.p_selection(i) for i in range(5000)] == [official.p_selection(i)
                                                          for i in range(5000)]
    budget = Budget(20, 30, 2, 10, 3, 100)
    built = referee(boxed, 0.1, budget, seed=0, device="cpu")
    assert (built.apgd.n_iter, built.apgd.n_iter_2, built.apgd.n_restarts) == (20, 4, 1)
    assert (built.apgd_targeted.n_iter_2, built.apgd_targeted.n_target_classes) == (6, 2)
    assert (built.fab.n_iter, built.fab.n_target_classes, built.fab.n_restarts) == (10, 3, 1)
    assert (built.square.n_queries, built.square.rescale_schedule) == (100, False)
    assert built.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_audit_records_carry_squares_schedule(make_settings):
    """An AutoAttack JSON made with another Square schedule reruns: the audit's params hold the
    schedule the attack uses."""
    from repro import records
    from repro.attacks import autoattack as autoattack_module

    record = records.audit_record(make_settings(), RunSpec("mnist", "standard", 0), "autoattack")
    assert record["square_rescale"] is autoattack_module.SQUARE_RESCALE
