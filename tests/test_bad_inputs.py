"""Bad inputs and a full disk: one clear line, the right exit code, nothing written first (issue 10, item 8)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
import yaml

from study import driver
from study.cli import main

OPTS = {"n_train": 100, "n_val": 20, "n_test": 20, "width": 8}


def _write(tmp_path: Path, **kw) -> Path:
    spec = {"name": kw.pop("name", "bad"), "store": str(tmp_path / "store"),
            "datasets": [{"name": "multi_digits", "options": OPTS, "epochs": 1}],
            "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": 2}, **kw}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_gpu_spec_on_a_cpu_only_machine_is_refused_before_the_store_is_written(tmp_path, capsys):
    assert main(["run", str(_write(tmp_path, resources={"cpu": 1, "gpu": 1}))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "resources.gpu" in err and "no CUDA GPU" in err
    assert not (tmp_path / "store").exists()


def test_a_250_character_study_name_is_one_line(tmp_path, capsys):
    assert main(["run", str(_write(tmp_path, name="n" * 250))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "name: must be at most 100 characters, got 250" in err
    assert not (tmp_path / "store").exists()


def test_a_full_disk_is_named_in_one_line_with_exit_1(tmp_path, capsys, monkeypatch):
    import study.run

    target = str(tmp_path / "store" / "studies" / "bad.json")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", target)

    monkeypatch.setattr(study.run, "save_plan", full)
    assert main(["run", str(_write(tmp_path))]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"no space left on {target}" in err


def test_enospc_deep_in_a_tune_error_is_found():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/s/metrics/x.parquet")
        except OSError as inner:
            raise RuntimeError("callback failed") from inner
    except RuntimeError as outer:
        found = driver.no_space(outer)
    assert found is not None and str(found) == "no space left on /s/metrics/x.parquet"
    assert driver.no_space(RuntimeError("other")) is None
