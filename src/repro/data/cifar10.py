"""CIFAR-10 (Krizhevsky 2009): 32×32 colour images of 10 classes, 50,000 + 10,000; Tables 1, 4-7."""
from repro.data import _load_torchvision
from repro.registry import Dataset

MEMBERS = [Dataset(
    id="cifar10", label="CIFAR-10", shape=(3, 32, 32), sizes=(50_000, 10_000),
    # mean/std of the training images (the paper code's values)
    statistics=((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    sources={"torchvision": _load_torchvision})]
