"""study/atomic.py: the store's JSON files are replaced whole or not at all (docs/store.md)."""

from __future__ import annotations

import json

import pytest

import study.atomic as atomic


def test_a_write_replaces_the_file_and_a_failed_write_leaves_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "plan.json"
    atomic.write_json(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}

    synced: list[int] = []
    real_fsync = atomic.os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    atomic.write_json(path, {"c": 3})
    assert json.loads(path.read_text()) == {"c": 3} and len(synced) == 1  # flushed to disk before the rename

    def half(data, f, **kw):  # a crash half-way through the dump
        f.write('{"d": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.json, "dump", half)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_json(path, {"d": 4})
    assert json.loads(path.read_text()) == {"c": 3}
    assert sorted(p.name for p in path.parent.iterdir()) == ["plan.json"]  # no temporary file left behind
