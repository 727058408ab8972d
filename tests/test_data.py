import pytest
import torch

from repro import data


def test_synthetic_has_right_shapes_classes_and_is_seeded(make_settings):
    splits = data.load(make_settings(), "cifar10")
    assert splits.train.images.shape == (128, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8
    assert (len(splits.val), len(splits.test)) == (64, 64)
    assert set(splits.train.labels.tolist()) == set(range(10))
    again = data.load(make_settings(), "cifar10")
    assert torch.equal(splits.train.images, again.train.images)
    assert "synthetic stand-in" in splits.source


def test_synthetic_mnist_is_grey_replicated(make_settings):
    images = data.load(make_settings("data.datasets.mnist.source=synthetic"), "mnist").test.images
    assert images.shape[1:] == (3, 28, 28)
    assert torch.equal(images[:, 0], images[:, 2])


def test_embedded_mnist_split_is_stratified_disjoint_and_deterministic(make_settings):
    settings = make_settings("data.datasets.mnist.subset=null")
    splits = data.load(settings, "mnist")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3900, 100, 1000)
    assert torch.bincount(splits.test.labels).tolist() == [100] * 10
    assert torch.bincount(splits.val.labels).tolist() == [10] * 10
    flat = lambda s: {bytes(img.numpy()) for img in s.images}  # noqa: E731
    assert not flat(splits.test) & flat(splits.val)
    assert torch.equal(splits.test.images, data.load(settings, "mnist").test.images)
    assert splits.test.images.max() > 200 and "embedded MNIST" in splits.source


def test_subset_takes_the_first_samples(make_settings):
    full = data.load(make_settings("data.datasets.mnist.subset=null"), "mnist")
    small = data.load(make_settings(), "mnist")
    assert torch.equal(small.train.images, full.train.images[:128])


def test_train_val_split_equals_torch_random_split():
    full = data.Split(torch.arange(50).view(50, 1, 1, 1).to(torch.uint8), torch.arange(50))
    train, val = data._train_val(full, 10, 42)
    ref_train, ref_val = torch.utils.data.random_split(
        range(50), [40, 10], generator=torch.Generator().manual_seed(42))
    assert train.labels.tolist() == list(ref_train.indices)
    assert val.labels.tolist() == list(ref_val.indices)


def test_batches_cover_the_split_once_scaled_to_unit_range(make_settings):
    split = data.load(make_settings(), "cifar10").train
    seen = []
    for images, labels in data.batches(split, 50, torch.Generator().manual_seed(0)):
        assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
        seen += labels.tolist()
    assert sorted(seen) == sorted(split.labels.tolist()) and len(seen) == 128


def test_missing_real_data_says_where_to_put_it(make_settings, tmp_path):
    settings = make_settings(f"data.root={tmp_path}", "data.datasets.mnist.source=torchvision",
                             "data.datasets.mnist.val_size=5000")
    with pytest.raises(data.DataUnavailable, match="source: embedded"):
        data.load(settings, "mnist")


def test_embedded_is_only_for_mnist(make_settings):
    with pytest.raises(ValueError, match="'embedded' is not one of .'torchvision', 'synth"):
        data.load(make_settings("data.datasets.cifar10.source=embedded"), "cifar10")


def test_normalization_follows_the_protocol(make_settings):
    assert data.normalization(make_settings(), "mnist") == data.STATISTICS["cifar10"]
    standard = make_settings("protocol.normalization={cifar10: cifar10, mnist: mnist}")
    assert data.normalization(standard, "mnist") == data.STATISTICS["mnist"]
