"""The shipped paper specs (studies/rw_*.yaml) load with the spec loader against fake data roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from study import spec as spec_mod

STUDIES = Path(__file__).resolve().parents[1] / "studies"
PAPER_SPECS = sorted(p for p in STUDIES.glob("rw_*.yaml"))


def fake_roots(base: Path) -> None:
    """Just enough files for each dataset's cheap check()."""
    for name, folders in (("nyuv2", ("image", "label", "depth", "normal")), ("cityscapes", ("image", "label", "depth"))):
        for split in ("train", "val"):
            for f in folders:
                (base / name / split / f).mkdir(parents=True)
                np.save(base / name / split / f / "0.npy", np.zeros(1))
    for name, domains in (("office31", ("amazon", "dslr", "webcam")),
                          ("office_home", ("Art", "Clipart", "Product", "Real_World"))):
        (base / name).mkdir()
        for d in domains:
            for s in ("train", "val", "test"):
                (base / name / f"{d}_{s}.txt").write_text("x.jpg 0\n")
    (base / "celeba" / "img_align_celeba").mkdir(parents=True)
    for f in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        (base / "celeba" / f).write_text("")
    for name, langs, ext in (("pawsx", ("en", "zh", "de", "es"), "tsv"), ("udpos", ("en", "zh", "te", "vi"), "conllu")):
        (base / name).mkdir()
        for lang in langs:
            for s in ("train", "dev", "test"):
                (base / name / f"{s}-{lang}.{ext}").write_text("")


def test_there_are_paper_specs() -> None:
    names = {p.stem for p in PAPER_SPECS}
    assert {"rw_table1_nyuv2", "rw_table2_xtreme", "rw_table3_nyuv2_combinations", "rw_table4_nyuv2_architectures",
            "rw_table6_cityscapes", "rw_table7_celeba", "rw_table8_office"} <= names


@pytest.mark.parametrize("path", PAPER_SPECS, ids=lambda p: p.stem)
def test_paper_spec_loads_with_data_root(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_roots(tmp_path)
    monkeypatch.setenv("LITMUS_DATA", str(tmp_path))
    s = spec_mod.load(path)
    assert s.name == path.stem.replace("_", "-")
    assert s.baseline == "ew" and len(s.final_seeds) >= 5
    for ds in s.datasets:
        assert str(ds.options["root"]).startswith("$LITMUS_DATA/")


@pytest.mark.parametrize("path", PAPER_SPECS[:1], ids=lambda p: p.stem)
def test_paper_spec_without_data_fails_naming_the_root(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITMUS_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="nothing-here"):
        spec_mod.load(path)
