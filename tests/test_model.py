import pytest
import torch

from repro.config import LAYERS
from repro.models.resnet import WeightsUnavailable, build_model, embedding_table
from tolerance import assert_float32_close

# ResNet-18's longest reduction (layer4's 3x3 convolutions over 512 channels): two passes that
# compute the same logits in another order may differ by that many roundings of their size.
RESNET_FAN_IN = 512 * 3 * 3

CIFAR_SHAPES = {"embed1": [64, 8, 8], "embed2": [64, 8, 8], "embed3": [128, 4, 4],
                "embed4": [256, 2, 2], "embed5": [512, 1, 1], "output": [10]}
MNIST_SHAPES = {"embed1": [64, 7, 7], "embed2": [64, 7, 7], "embed3": [128, 4, 4],
                "embed4": [256, 2, 2], "embed5": [512, 1, 1], "output": [10]}


@pytest.mark.parametrize("dataset,shapes", [("cifar10", CIFAR_SHAPES), ("mnist", MNIST_SHAPES)])
def test_embedding_table_has_table3_components_and_shapes(dataset, shapes):
    rows = embedding_table(dataset)
    assert [r["layer"] for r in rows] == list(LAYERS)
    assert {r["layer"]: r["shape"] for r in rows} == shapes
    assert rows[0]["components"] == "conv1 + bn1 + relu + maxpool"
    assert rows[4]["components"].endswith("layer4 + avgpool") and rows[4]["dim"] == 512
    assert rows[5]["components"].endswith("avgpool + fc")


def test_one_pass_gives_every_tap_and_the_logits(make_settings):
    model = build_model(make_settings(), "cifar10").eval()
    inputs = torch.randn(4, 3, 32, 32)
    logits, taps = model.forward_taps(inputs, LAYERS)
    assert torch.equal(taps["output"], logits)
    assert_float32_close(logits, model(inputs), roundings=RESNET_FAN_IN)
    assert {k: list(v.shape[1:]) for k, v in taps.items()} == CIFAR_SHAPES


def test_partial_pass_stops_at_the_deepest_tap(make_settings):
    model = build_model(make_settings(), "cifar10").train()
    before = model.resnet.layer4[0].bn1.running_mean.clone()
    logits, taps = model.forward_taps(torch.randn(4, 3, 32, 32), ("embed2",), logits=False)
    assert logits is None and list(taps) == ["embed2"]
    assert torch.equal(model.resnet.layer4[0].bn1.running_mean, before)


def test_pixel_and_normalized_spaces_compute_the_same_function(make_settings):
    paper = build_model(make_settings(), "cifar10").eval()
    standard = build_model(make_settings("protocol.attack_space=pixel"), "cifar10").eval()
    standard.load_state_dict(paper.state_dict())
    pixels = torch.rand(3, 3, 32, 32)
    assert_float32_close(standard(standard.to_input(pixels)), paper(paper.to_input(pixels)),
                         roundings=RESNET_FAN_IN)
    assert torch.equal(standard.to_input(pixels), pixels)


def test_seed_alone_fixes_the_initial_weights(make_settings):
    first = build_model(make_settings(), "mnist", seed=3).state_dict()
    torch.rand(5)  # the global RNG state does not matter
    second = build_model(make_settings(), "mnist", seed=3).state_dict()
    other = build_model(make_settings(), "mnist", seed=4).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["resnet.fc.weight"], other["resnet.fc.weight"])


def test_building_models_leaves_the_global_rng_alone(make_settings):
    """Jobs are threads of one process: a model built for Table 3 while a training job built
    its own once changed that run's initial weights (the smoke fingerprint caught it)."""
    torch.manual_seed(123)
    state = torch.get_rng_state()
    embedding_table("cifar10")
    build_model(make_settings(), "cifar10", seed=4)
    assert torch.equal(torch.get_rng_state(), state)


def test_weights_from_a_file(make_settings, tmp_path):
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    model = build_model(make_settings(f"model.pretrained={tmp_path / 'w.pth'}"), "cifar10")
    assert torch.equal(model.resnet.conv1.weight, reference.conv1.weight)
    with pytest.raises(WeightsUnavailable, match="'imagenet' or 'none'"):
        build_model(make_settings(f"model.pretrained={tmp_path / 'missing.pth'}"), "cifar10")


def test_imagenet_weights_offline_fail_naming_the_alternatives(make_settings, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailable, match="'none'") as error:
        build_model(make_settings("model.pretrained=imagenet"), "cifar10")
    assert "resnet18-f37072fd.pth" in str(error.value)
