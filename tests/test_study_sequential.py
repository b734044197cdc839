"""The sequential final stage on real Ray, real Parquet: rounds, decisions in the store, resume, status."""

from __future__ import annotations

import pyarrow.dataset as pads
import pytest

from analysis.sequential import load_decisions
from study.run import run_study
from study.run_cli import status_table
from study.spec import SpecError, parse
from study.store import Store

SMALL = {"n_train": 1000, "n_val": 200, "n_test": 300, "width": 16}


def _spec(tmp_path, seeds):
    return parse(_spec_dict(tmp_path, seeds))


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


def _spec_dict(tmp_path, seeds):
    # `fixed` [0, 1] never trains the left digit: far from RLW and EW on every seed
    return {
        "name": "seq", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": 8, "train": {"lr": 3.0e-3}}],
        "methods": ["ew", {"name": "rlw", "distributions": ["normal"]},
                    {"name": "fixed", "params": {"task_weights": [0.0, 1.0]}}],
        "tuning": {"methods": "none"},
        "final": {"seeds": seeds, "epoch": "last"},
    }


@pytest.mark.slow
def test_rounds_stop_decided_cells_and_a_kill_in_round_two_resumes_with_the_same_decisions(tmp_path, local_ray):
    from test_study_faults import _run_then_kill

    d = _spec_dict(tmp_path, {"start": 4, "step": 2, "max": 6, "until": "decided"})
    spec = parse(d)
    decisions_file = spec.store / "decisions" / "seq.parquet"

    def in_round_two() -> bool:  # round 1 decided and recorded, a round-2 trial finished
        try:
            return decisions_file.exists() and sum(t["status"] == "completed" for t in Store(spec.store).trials()) > 12
        except Exception:  # noqa: BLE001 - a file being replaced while polling
            return False

    _run_then_kill(d, tmp_path, in_round_two, timeout=900)
    before = load_decisions(spec.store, "seq")
    assert set(before["round"]) == {1}  # killed during round 2: only round 1 is recorded
    res = run_study(spec, say=lambda m: None, keep_ray=True)
    dec = load_decisions(spec.store, "seq")
    assert dec[dec["round"] == 1].reset_index(drop=True).equals(before)  # never recomputed
    first = dec[dec["round"] == 1].set_index(["variant", "against"])
    # the family: 2 comparisons against rlw:normal and 2 against ew
    assert len(first) == 4 and set(dec["family"]) == {4}
    assert first.loc[("fixed", "rlw:normal"), "state"] == "worse"
    assert first.loc[("fixed", "ew"), "state"] == "worse"
    assert first.loc[("fixed", "rlw:normal"), "diff_delta_m"] < -10
    assert first.loc[("ew", "rlw:normal"), "state"] == "continue"  # close: it gets round 2's seeds
    trials = Store(spec.store).trials("seq")
    seeds_of = {}
    for t in trials:
        seeds_of.setdefault(t["method"], set()).add(t["seed"])
    # fixed was decided at the first look: it never got round 2's seeds; the close cells did
    assert seeds_of == {"fixed": {0, 1, 2, 3}, "ew": set(range(6)), "rlw": set(range(6))}
    assert set(dec.loc[dec["round"] == 2, "variant"]) <= {"ew", "rlw:normal"}
    assert res.counts == {"completed": 16, "failed": 0, "diverged": 0, "missing": 0}
    rows = pads.dataset(str(spec.store / "metrics"), format="parquet").to_table().to_pandas()
    assert not rows.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()
    # a rerun of the finished study: nothing runs, the decisions are read back unchanged
    res2 = run_study(spec, say=lambda m: None, keep_ray=True)
    assert res2.counts == res.counts
    assert pads.dataset(str(spec.store / "metrics"), format="parquet").count_rows() == len(rows)
    assert load_decisions(spec.store, "seq").equals(dec)
    text = status_table(spec.store, "seq")
    assert "sequential final stage: looks at 4, 6 seeds" in text
    assert "multi_digits/hps/fixed" in text and "worse at 4 seeds" in text
    # seeds never needed by a decided cell are not reported as missing
    fixed_line = next(l for l in text.splitlines() if l.strip().startswith("final") and "/fixed" in l)
    assert fixed_line.split()[-1] == "0"
