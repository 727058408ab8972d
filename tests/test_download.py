"""The real download path, end to end, against a local HTTP server (loopback only).

The unit tests in test_data.py never download; here ``repro.data.prepare`` and ``load`` run
torchvision's own downloaders, checksum checks and readers on tiny archives written in the
exact on-disk formats of CIFAR-10 (pickled batches in a tar.gz) and MNIST (gzipped idx files),
served from 127.0.0.1 with torchvision's URLs and MD5s pointed at them. That is the only way to
know that a fresh machine gets the right pixels, that a second run needs no network, and that a
bad download or a dead network ends in an error a user can act on.
"""
import errno
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets
from torchvision.datasets import utils as tv_utils

from repro import cli, data
from repro.runtime.io import OutputUnwritable

ROOT = Path(__file__).resolve().parents[1]

TRAIN_PER_BATCH, N_TEST, VAL_SIZE = 4, 6, 5  # CIFAR-10: 5 batches -> 20 train images
MNIST_TRAIN = 20


def _md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def _cifar_files(rng) -> tuple[dict[str, bytes], dict]:
    """CIFAR-10's python version: pickled dicts with uint8 rows of 3072 (R, G, B planes)."""
    members, expected = {}, {"train": [], "test": []}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = N_TEST if name == "test_batch" else TRAIN_PER_BATCH
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        members[name] = pickle.dumps({"batch_label": name, "labels": labels, "data": pixels,
                                      "filenames": [f"{name}_{i}.png" for i in range(n)]},
                                     protocol=2)
        expected["test" if name == "test_batch" else "train"].append((pixels, labels))
    members["batches.meta"] = pickle.dumps(
        {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": TRAIN_PER_BATCH,
         "num_vis": 3072}, protocol=2)
    truth = {}
    for split, parts in expected.items():
        pixels = np.concatenate([p for p, _ in parts]).reshape(-1, 3, 32, 32)
        labels = sum((labels for _, labels in parts), [])
        truth[split] = (torch.from_numpy(pixels), torch.tensor(labels))
    return members, truth


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


def _idx(array: np.ndarray) -> bytes:
    """MNIST's idx format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian sizes, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                      for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_files(rng) -> tuple[dict[str, bytes], dict]:
    files, truth = {}, {}
    for prefix, split, n in (("train", "train", MNIST_TRAIN), ("t10k", "test", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(_idx(images), mtime=0)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(_idx(labels), mtime=0)
        grey = torch.from_numpy(images).unsqueeze(1).expand(-1, 3, -1, -1)
        truth[split] = (grey, torch.from_numpy(labels).long())
    return files, truth


class Server:
    """A threaded HTTP server on 127.0.0.1 serving ``files`` (path -> bytes), logging requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        self.delay = 0.0  # seconds to wait before each 4 KiB: a slow network
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5  # a stuck client cannot hold a handler thread for long

            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.requests.append(self.path)
                blob = outer.files.get(self.path)
                if blob is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                try:
                    for start in range(0, len(blob), 4096):
                        time.sleep(outer.delay)
                        self.wfile.write(blob[start:start + 4096])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # torchvision's redirect probe hangs up after the headers

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(timeout=5)
        self.httpd.server_close()


@pytest.fixture
def server():
    started = Server({})
    yield started
    started.stop()


def _closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _point_torchvision_at(monkeypatch, base_url: str, cifar: dict, mnist: dict):
    """Point the downloaders at ``base_url`` and make them expect our files' checksums."""
    members = {k: v for k, v in cifar.items() if k != "cifar-10-python.tar.gz"}
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{base_url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", _md5(cifar["cifar-10-python.tar.gz"]))
    monkeypatch.setattr(datasets.CIFAR10, "train_list",
                        [[f"data_batch_{i}", _md5(members[f"data_batch_{i}"])]
                         for i in range(1, 6)])
    monkeypatch.setattr(datasets.CIFAR10, "test_list",
                        [["test_batch", _md5(members["test_batch"])]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                   "md5": _md5(members["batches.meta"])})
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"{base_url}/mnist/"])
    monkeypatch.setattr(datasets.MNIST, "resources",
                        [(name, _md5(blob)) for name, blob in mnist.items()])


@pytest.fixture
def fake_data():
    """Both datasets' files and the tensors they hold: {dataset: (served files, truth)}."""
    rng = np.random.default_rng(0)
    cifar_members, cifar_truth = _cifar_files(rng)
    cifar = dict(cifar_members, **{"cifar-10-python.tar.gz": _tar_gz(cifar_members)})
    mnist, mnist_truth = _mnist_files(rng)
    return {"cifar10": (cifar, cifar_truth), "mnist": (mnist, mnist_truth)}


@pytest.fixture
def served(server, fake_data, monkeypatch):
    """The server holds both datasets' downloads; torchvision points at it."""
    cifar, _ = fake_data["cifar10"]
    mnist, _ = fake_data["mnist"]
    server.files["/cifar-10-python.tar.gz"] = cifar["cifar-10-python.tar.gz"]
    server.files.update({f"/mnist/{name}": blob for name, blob in mnist.items()})
    _point_torchvision_at(monkeypatch, server.url, cifar, mnist)
    return server


@pytest.fixture
def real_settings(make_settings, tmp_path):
    def make(dataset: str):
        return make_settings(f"data.root={tmp_path / 'data'}",
                             f"data.datasets.{dataset}.source=torchvision",
                             f"data.datasets.{dataset}.val_size={VAL_SIZE}",
                             f"data.datasets.{dataset}.subset=null")
    return make


DATASETS = ["cifar10", "mnist"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_download_then_load_round_trips_exactly_and_second_prepare_needs_no_network(
        dataset, served, fake_data, real_settings):
    settings = real_settings(dataset)
    n_train = 5 * TRAIN_PER_BATCH if dataset == "cifar10" else MNIST_TRAIN
    summary = data.prepare(settings, dataset)
    assert summary["sizes"] == {"train": n_train - VAL_SIZE, "val": VAL_SIZE, "test": N_TEST}
    assert served.requests, "nothing was downloaded from the local server"

    splits = data.load(settings, dataset)
    truth = fake_data[dataset][1]
    # train/val is the paper's random_split(full, [n - val, val], manual_seed(split_seed)).
    reference = torch.utils.data.random_split(range(n_train), [n_train - VAL_SIZE, VAL_SIZE],
                                              generator=torch.Generator().manual_seed(42))
    images, labels = truth["train"]
    for split, subset in zip((splits.train, splits.val), reference):
        assert torch.equal(split.images, images[subset.indices])
        assert torch.equal(split.labels, labels[subset.indices])
    assert torch.equal(splits.test.images, truth["test"][0])
    assert torch.equal(splits.test.labels, truth["test"][1])
    assert splits.test.images.dtype == torch.uint8 and splits.test.labels.dtype == torch.int64

    served.stop()  # port closed: any download attempt now fails
    count = len(served.requests)
    assert data.prepare(settings, dataset) == summary
    assert len(served.requests) == count


@pytest.mark.parametrize("dataset", DATASETS)
def test_corrupt_download_is_rejected_set_aside_and_recovered(
        dataset, served, fake_data, real_settings, tmp_path):
    settings = real_settings(dataset)
    if dataset == "cifar10":
        name, good_path = "cifar-10-python.tar.gz", "/cifar-10-python.tar.gz"
        on_disk = tmp_path / "data" / name
    else:
        name = "t10k-labels-idx1-ubyte.gz"
        good_path, on_disk = f"/mnist/{name}", tmp_path / "data" / "MNIST" / "raw" / name
    good = served.files[good_path]
    served.files[good_path] = b"<html>proxy says no</html>" + good[26:]  # wrong bytes

    with pytest.raises(data.DataUnavailable) as caught:
        data.prepare(settings, dataset)
    message = str(caught.value)
    assert str(on_disk) in message and "corrupt" in message and _md5(good) in message
    assert "python -m repro download" in message and "source: synthetic" in message
    assert not on_disk.exists(), "a download that failed its checksum was left in place"
    assert on_disk.with_name(name + ".corrupt").read_bytes().startswith(b"<html>")

    served.files[good_path] = good  # the mirror is fixed: the same call now just works
    assert data.prepare(settings, dataset)["sizes"]["test"] == N_TEST


@pytest.mark.parametrize("dataset", DATASETS)
def test_no_files_and_no_network_fails_fast_naming_offline_sources(
        dataset, fake_data, real_settings, monkeypatch):
    cifar, mnist = fake_data["cifar10"][0], fake_data["mnist"][0]
    _point_torchvision_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}", cifar, mnist)
    start = time.monotonic()
    with pytest.raises(data.DataUnavailable) as caught:
        data.prepare(real_settings(dataset), dataset)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert f"data.datasets.{dataset}.source: " in message and "source: synthetic" in message
    assert ("source: embedded" in message) == (dataset == "mnist")
    assert "python -m repro download" in message


def test_a_server_that_never_answers_times_out(fake_data, real_settings, monkeypatch):
    """A port that accepts connections but never replies (what a dropping firewall or a dead
    proxy looks like) must not hang the job: torchvision's urlopen has no timeout of its own."""
    cifar, mnist = fake_data["cifar10"][0], fake_data["mnist"][0]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        # Without a working timeout the download would block forever: reset it after 10 s so
        # that such a regression fails this test instead of hanging the suite.
        reset = threading.Timer(10, silent.close)
        reset.daemon = True
        reset.start()
        _point_torchvision_at(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}",
                              cifar, mnist)
        monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.5)
        start = time.monotonic()
        with pytest.raises(data.DataUnavailable, match="source: embedded"):
            data.prepare(real_settings("mnist"), "mnist")
        assert time.monotonic() - start < 5
        reset.cancel()
    assert socket.getdefaulttimeout() is None  # the process-wide default is restored


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_damaged_extracted_file_is_named_and_the_download_repairs_it_offline(
        dataset, served, real_settings, tmp_path):
    """An interrupted extraction leaves a short file. torchvision md5-checks CIFAR-10's batches
    but only checks that MNIST's extracted files exist, so a short one used to surface as a
    bare reader error naming its folder, and a download left it as it was."""
    settings = real_settings(dataset)
    data.prepare(settings, dataset)
    extracted = tmp_path / "data" / ("cifar-10-batches-py/data_batch_3" if dataset == "cifar10"
                                     else "MNIST/raw/train-images-idx3-ubyte")
    extracted.write_bytes(extracted.read_bytes()[:1000])
    with pytest.raises(data.DataUnavailable) as caught:
        data.load(settings, dataset)
    message = str(caught.value)
    assert f"damaged extracted file {extracted} (" in message and "\n" not in message
    assert f"`python -m repro download {dataset} --set data.root={tmp_path / 'data'}`" in message
    served.stop()  # the archive on disk is intact: no network needed to repair
    assert data.prepare(settings, dataset)["sizes"]["val"] == VAL_SIZE
    assert data.load(settings, dataset).val.images.shape[0] == VAL_SIZE


def test_a_corrupt_download_is_one_line_from_the_cli(served, tmp_path):
    """DataUnavailable is a UserError: the CLI prints its message, not a 31-78 line traceback."""
    name = "t10k-labels-idx1-ubyte.gz"
    served.files[f"/mnist/{name}"] = b"<html>proxy says no</html>"
    with pytest.raises(SystemExit) as stopped:
        cli.main(["download", "mnist", "--config", str(ROOT / "config.yaml"),
                  "--set", f"data.root={tmp_path / 'data'}"])
    message = str(stopped.value.code)
    assert message.startswith("python -m repro download: MNIST: corrupt download (")
    assert str(tmp_path / "data" / "MNIST" / "raw" / name) in message and "\n" not in message


def test_two_downloads_at_once_take_turns_and_both_succeed(served, real_settings, tmp_path,
                                                           capfd):
    """Two workflows (the paper's and the standard protocol, say) started together on one
    data.root: without a lock both fetched into the same file and one set the other's
    half-written archive aside as corrupt. A slow server keeps the first download running
    while the second starts."""
    served.delay = 0.02  # seconds per 4 KiB: about half a second per CIFAR-10 archive
    settings = real_settings("cifar10")
    results, errors = [], []

    def download():
        try:
            results.append(data.prepare(settings, "cifar10"))
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=download) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)  # the first is mid-transfer when the second starts
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert results[0] == results[1] and results[0]["sizes"]["val"] == VAL_SIZE
    # one download's requests (torchvision's redirect probe is a GET too): the second waited
    # and found the archive verified
    assert served.requests == ["/cifar-10-python.tar.gz"] * 2
    assert not list((tmp_path / "data").glob("*.corrupt"))
    assert "another download into" in capfd.readouterr().err


def test_a_full_disk_during_a_download_is_named_as_such_not_as_corrupt(served, real_settings,
                                                                      monkeypatch, tmp_path):
    """Before: the half-written archive failed its MD5 and was reported (and set aside) as a
    corrupt download, sending the user after the network instead of the disk."""
    def fills_the_disk(url, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"half an archive")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(tv_utils, "_urlretrieve", fills_the_disk)
    with pytest.raises(OutputUnwritable, match=r"no space left on the device \(ENOSPC\)"):
        data.prepare(real_settings("cifar10"), "cifar10")
    assert not list((tmp_path / "data").glob("*.corrupt"))
