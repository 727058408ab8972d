"""Atomic outputs: a failed write leaves the previous file whole and no temporary behind."""
import errno
import os
import stat
import uuid

import pytest
import torch

import repro.runtime.io as io_module
from filesystems import read_only, small_filesystem
from repro.runtime.io import (CorruptFile, OutputUnwritable, atomic_path, check_writable,
                              load_torch, read_json, remove_temporaries, save_torch, write_json,
                              write_text)


def test_a_crash_mid_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "table.md"
    write_text(target, "finished work\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a ta")
            raise RuntimeError("killed")
    assert target.read_text() == "finished work\n"
    assert os.listdir(tmp_path) == ["table.md"]


def test_outputs_follow_the_umask_like_any_file(tmp_path):
    """Results on a shared cluster filesystem must be readable by the group (mkstemp gives 0600)."""
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.md", "x")
        plain = tmp_path / "b.md"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_file_that_does_not_load_names_itself_and_the_fix(tmp_path):
    write_json(tmp_path / "ok.json", {"top1": 1.0})
    assert read_json(tmp_path / "ok.json", "make it again") == {"top1": 1.0}
    (tmp_path / "cut.json").write_text('{"top1": 1.')
    with pytest.raises(CorruptFile, match=r"cut\.json does not load as JSON.*; make it again"):
        read_json(tmp_path / "cut.json", "make it again")
    save_torch(tmp_path / "state.pt", {"epoch": 1})
    with pytest.raises(CorruptFile, match=r"state\.pt lacks \['model'\].*; start over"):
        load_torch(tmp_path / "state.pt", "start over", required=("epoch", "model"))


def test_a_rerun_removes_the_temporaries_a_killed_writer_left(tmp_path):
    """kill -9 between creating the temporary and renaming it leaves `.NAME.<uuid>.tmp`."""
    target = tmp_path / "model.pt.state"
    orphan = tmp_path / f".model.pt.state.{uuid.uuid4().hex}.tmp"
    others = [tmp_path / f".model.pt.{uuid.uuid4().hex}.tmp", tmp_path / ".model.pt.state.x.tmp",
              tmp_path / "notes.tmp"]
    for path in (orphan, *others):
        path.write_text("x")
    assert remove_temporaries(target) == [orphan]
    assert not orphan.exists() and all(path.exists() for path in others)


class _FillingFile:
    """A file on a disk with ``room`` bytes left: a write beyond them raises ENOSPC."""

    def __init__(self, handle, room: int):
        self._handle, self._room = handle, room

    def write(self, blob):
        if len(blob) > self._room:
            self._handle.write(blob[:self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(blob)
        return self._handle.write(blob)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _disk_fills_up(monkeypatch, room=100):
    """Every file repro.runtime.io opens for writing can take ``room`` bytes, then ENOSPC."""
    def filling_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        return _FillingFile(handle, room) if "w" in mode else handle
    monkeypatch.setattr(io_module, "open", filling_open, raising=False)


@pytest.mark.parametrize("write, failing", [
    (lambda path: write_json(path, {"top1": list(range(1000))}), "out"),
    (lambda path: save_torch(path, {"model": torch.zeros(1000)}), "out"),
    # a checkpoint with its metrics: the metrics fill the disk, the checkpoint stays old too
    (lambda path: save_torch(path, {"model": torch.zeros(10)},
                             {path.with_name("m.csv"): "a" * 999}), "m.csv"),
    # the checkpoint fills the disk: its metrics, written, stay old too
    (lambda path: save_torch(path, {"model": torch.zeros(1000)},
                             {path.with_name("m.csv"): "a" * 10}), "out"),
], ids=["json", "torch", "text+torch", "torch+text"])
def test_a_full_disk_keeps_the_previous_file_and_says_which_and_why(tmp_path, monkeypatch,
                                                                   write, failing):
    """Before: torch's `[enforce fail at inline_container.cc:672] . unexpected pos` (or an
    OSError) under a 23-28 line traceback that named no file."""
    target, beside = tmp_path / "out", tmp_path / "m.csv"
    target.write_text("previous")
    beside.write_text("previous metrics")
    _disk_fills_up(monkeypatch)
    with pytest.raises(OutputUnwritable) as caught:
        write(target)
    message = str(caught.value)
    assert message.startswith(f"cannot write {tmp_path / failing}: no space left on the device "
                              f"(ENOSPC)")
    assert f"df -h {tmp_path}" in message and "\n" not in message
    assert target.read_text() == "previous" and beside.read_text() == "previous metrics"
    assert sorted(os.listdir(tmp_path)) == ["m.csv", "out"]  # no temporary left


def test_a_really_full_filesystem_gives_the_same_one_line(tmp_path):
    """The same on a real 1 MiB filesystem: torch.save given a file name reported it as
    `RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos`."""
    with small_filesystem(tmp_path / "small", 1) as small:
        target = small / "model.pt"
        save_torch(target, {"model": torch.ones(1000)})
        with pytest.raises(OutputUnwritable, match=rf"^cannot write {target}: no space left"):
            save_torch(target, {"model": torch.zeros(1 << 20)})  # 4 MiB
        assert torch.equal(load_torch(target, "")["model"], torch.ones(1000))
        assert os.listdir(small) == ["model.pt"]


def test_an_unwritable_folder_is_found_before_any_work(tmp_path):
    with read_only(tmp_path / "ro") as folder:
        target = folder / "runs" / "model.pt"
        with pytest.raises(OutputUnwritable) as caught:
            check_writable(target)
        assert str(caught.value).startswith(f"cannot write {target}: ")
        assert any(cause in str(caught.value) for cause in ("read-only", "permission denied"))
        assert not list(folder.iterdir())
    check_writable(tmp_path / "fine" / "model.pt")  # a missing folder is made
    assert list((tmp_path / "fine").iterdir()) == []
