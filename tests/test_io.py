"""Atomic outputs: a failed write leaves the previous file whole and no temporary behind."""
import os
import stat
import uuid

import pytest

from repro.runtime.io import (CorruptFile, atomic_path, load_torch, read_json, remove_temporaries,
                              save_torch, write_json, write_text)


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
