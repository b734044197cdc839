"""The sequential final stage on real Ray, real Parquet: rounds, decisions in the store, resume, status."""

from __future__ import annotations

import pyarrow.dataset as pads
import pytest
import ray

from analysis.sequential import load_decisions
from study.run import run_study
from study.run_cli import status_table
from study.spec import SpecError, parse
from study.store import Store

SMALL = {"n_train": 1000, "n_val": 200, "n_test": 300, "width": 16}


@pytest.fixture(autouse=True)
def _ray_down():
    yield
    ray.shutdown()


def _spec(tmp_path, seeds):
    return parse({
        "name": "seq", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": 8, "train": {"lr": 3.0e-3}}],
        # `fixed` [1, 0] never trains the left digit: far from RLW and EW on every seed
        "methods": ["ew", {"name": "rlw", "distributions": ["normal"]},
                    {"name": "fixed", "params": {"task_weights": [0.0, 1.0]}}],
        "tuning": {"methods": "none"},
        "final": {"seeds": seeds, "epoch": "last"},
    })


def test_sequential_spec_errors_name_the_field_and_the_smallest_workable_value(tmp_path):
    for seeds, match in (({"start": 5, "step": 5, "max": 3, "until": "decided"}, r"final\.seeds\.max: .* 5"),
                         ({"start": 5, "step": 0, "max": 9, "until": "decided"}, r"final\.seeds\.step: .* 1"),
                         ({"start": 1, "step": 1, "max": 9, "until": "decided"}, r"final\.seeds\.start: .* 2"),
                         ({"start": 3, "step": 1, "max": 9, "until": "always"}, r"final\.seeds\.until"),
                         ({"start": 3, "step": 1, "max": 9}, r"final\.seeds\.until: missing"),
                         ({"start": "3", "step": 1, "max": 9, "until": "decided"}, r"final\.seeds\.start: expected")):
        with pytest.raises(SpecError, match=match):
            _spec(tmp_path, seeds)
    spec = _spec(tmp_path, {"start": 3, "step": 2, "max": 6, "until": "decided"})
    assert spec.sequential["looks"] == [3, 5, 6] and spec.final_seeds == list(range(6))


@pytest.mark.slow
def test_rounds_stop_decided_cells_and_resume_with_the_same_decisions(tmp_path):
    spec = _spec(tmp_path, {"start": 4, "step": 2, "max": 6, "until": "decided"})
    res = run_study(spec, say=lambda m: None)
    dec = load_decisions(spec.store, "seq")
    first = dec[dec["round"] == 1].set_index(["variant", "against"])
    # the family: 2 comparisons against rlw:normal and 2 against ew
    assert len(first) == 4 and set(dec["family"]) == {4}
    assert first.loc[("fixed", "rlw:normal"), "state"] == "worse"
    assert first.loc[("fixed", "ew"), "state"] == "worse"
    assert first.loc[("fixed", "rlw:normal"), "diff_delta_m"] < -10
    trials = Store(spec.store).trials("seq")
    seeds_of = {}
    for t in trials:
        seeds_of.setdefault(t["method"], set()).add(t["seed"])
    # fixed was decided at the first look: it never got round 2's seeds; the others got what was open
    assert seeds_of["fixed"] == {0, 1, 2, 3}
    open_after_1 = dec[(dec["round"] == 1) & (dec["state"] == "continue")]
    if len(open_after_1):
        assert seeds_of["ew"] >= {0, 1, 2, 3, 4, 5}
        assert set(dec.loc[dec["round"] == 2, "variant"]) <= {"ew", "rlw:normal"}
    assert res.counts["completed"] == len(trials) and res.counts["missing"] == 0
    # resume: nothing reruns, the decisions are read back unchanged
    n_rows = pads.dataset(str(spec.store / "metrics"), format="parquet").count_rows()
    res2 = run_study(spec, say=lambda m: None)
    assert res2.counts == res.counts
    assert pads.dataset(str(spec.store / "metrics"), format="parquet").count_rows() == n_rows
    assert load_decisions(spec.store, "seq").equals(dec)
    text = status_table(spec.store, "seq")
    assert "sequential final stage: looks at 4, 6 seeds" in text
    assert "multi_digits/hps/fixed" in text and "worse at 4 seeds" in text
    # seeds never needed by a decided cell are not reported as missing
    fixed_line = next(l for l in text.splitlines() if l.strip().startswith("final") and "/fixed" in l)
    assert fixed_line.split()[-1] == "0"
