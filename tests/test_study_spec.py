"""Spec validation (one-line errors naming the field), plan determinism, CLI bad input. No Ray trials run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from study import spec as spec_mod
from study.cli import main
from study.plan import final_jobs, planned_counts, reference_jobs
from study.search_space import method_space, space
from study.spec import SpecError, parse

BASE = {
    "name": "t",
    "store": "store",
    "datasets": [{"name": "multi_digits", "options": {"n_train": 100, "n_val": 50, "n_test": 50, "width": 8},
                  "epochs": 1}],
    "methods": ["ew", {"name": "rlw", "distributions": ["normal", "dirichlet"]}, "uw", "rlw+pcgrad"],
    "tuning": {"trials": 2, "seeds": [100, 101], "shared": {"lr": {"low": 1e-4, "high": 1e-2}}},
    "final": {"seeds": 3},
}


def bad(mutate, tmp_path: Path) -> str:
    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(SpecError) as e:
        parse(d, base=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["methods"].append("nope"), "methods[4].name", "unknown method"),
    (lambda d: d["methods"].__setitem__(2, {"name": "uw", "distributions": ["normal"]}), "methods[2].distributions",
     "not random"),
    (lambda d: d["methods"].__setitem__(1, {"name": "rlw", "distributions": ["gauss"]}), "methods[1].distributions[0]",
     "unknown distribution"),
    (lambda d: d["final"].__setitem__("seeds", []), "final.seeds", "at least one seed"),
    (lambda d: d["final"].__setitem__("seeds", 0), "final.seeds", ">= 1"),
    (lambda d: d["tuning"].__setitem__("seeds", [2, 100]), "tuning.seeds", "overlap"),
    (lambda d: d["datasets"][0]["options"].__setitem__("n_train", -3), "datasets[0].options.n_train", "positive"),
    (lambda d: d["datasets"][0]["options"].__setitem__("colour", 1), "datasets[0].options.colour", "unknown option"),
    (lambda d: d["datasets"].append({"name": "mnist"}), "datasets[1].name", "unknown dataset"),
    (lambda d: d.__setitem__("resources", {"cpu": 1, "tpu": 2}), "resources.tpu", "unknown field"),
    (lambda d: d["tuning"].__setitem__("methods", ["cagrad"]), "tuning.methods[0]", "not one of"),
    (lambda d: d["methods"].__setitem__(2, {"name": "uw", "params": {"lr": "fast"}}), "methods[2].params", "number"),
    (lambda d: d["tuning"]["shared"].__setitem__("lr", {"low": 1e-2, "high": 1e-4}), "tuning.shared.lr.high", ">="),
    (lambda d: d["final"].__setitem__("epoch", "first"), "final.epoch", "best-val"),
    (lambda d: d["methods"].append({"name": "mgda", "space": "rep"}), "methods[4]", "cannot work in 'rep'"),
])
def test_bad_spec_names_the_field(mutate, field, words, tmp_path):
    msg = bad(mutate, tmp_path)
    assert msg.startswith(field + ":") or field in msg, msg
    assert words in msg, msg


def test_good_spec_and_plan_are_deterministic(tmp_path):
    s1, s2 = parse(copy.deepcopy(BASE), base=tmp_path), parse(copy.deepcopy(BASE), base=tmp_path)
    assert s1.store == tmp_path / "store"
    r1, r2 = reference_jobs(s1), reference_jobs(s2)
    assert [j.trial_id for j in r1] == [j.trial_id for j in r2] and len(r1) == 2
    f1, f2 = final_jobs(s1, {}), final_jobs(s2, {})
    assert [j.trial_id for j in f1] == [j.trial_id for j in f2]
    assert len(f1) == len({j.trial_id for j in f1}) == (1 + 2 + 1 + 1) * 3
    # the same seeds for every method: paired comparisons
    seeds = {(j.config["method"], j.config["distribution"]): sorted(j.config["seed"] for j in f1 if
             (j.config["method"], j.config["distribution"]) == (j2.config["method"], j2.config["distribution"]))
             for j2 in f1 for j in [j2]}
    assert all(v == [0, 1, 2] for v in
               {k: sorted(j.config["seed"] for j in f1 if (j.config["method"], j.config["distribution"]) == k)
                for k in seeds}.values())
    counts = planned_counts(s1)
    assert counts["tune"]["multi_digits/hps/uw"] == 4 and counts["final"]["multi_digits/hps/rlw"] == 6
    # tuned hyperparameters change the final ids; the search space has the shared lr and the method's own
    assert set(space(s1, s1.method("uw"))) == {"lr", "uw.lr"}
    assert method_space(s1.method("rlw")) == {}
    tuned = final_jobs(s1, {"multi_digits": {"hps": {"uw": {"params": {"lr": 0.003, "uw.lr": 0.01}}}}})
    uw = [j for j in tuned if j.config["method"] == "uw"]
    assert uw[0].config["lr"] == 0.003 and uw[0].config["method_params"] == {"uw.lr": 0.01}
    assert {j.trial_id for j in uw}.isdisjoint({j.trial_id for j in f1})


def test_shipped_quickstart_is_valid_and_identical():
    root = Path(__file__).resolve().parents[1]
    packaged = spec_mod.quickstart_path()
    assert packaged.read_text() == (root / "studies" / "quickstart.yaml").read_text()
    s = spec_mod.load(packaged)
    assert s.name == "quickstart" and s.method("rlw").distributions == ["normal"]
    # trained to convergence by one rule for every method, tuned with common random numbers
    assert all(ds.patience == 2 for ds in s.datasets) and s.tuning.trials == 3 and len(s.final_seeds) == 8


def _write(tmp_path: Path, d: dict) -> str:
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(d))
    return str(p)


def test_cli_bad_inputs_exit_2_before_any_trial(tmp_path, capsys):
    d = copy.deepcopy(BASE)
    d["methods"].append("nope")
    assert main(["run", _write(tmp_path, d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("litmus: error: methods[4].name:")
    # unsafe YAML is not executed
    (tmp_path / "evil.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")
    assert main(["run", str(tmp_path / "evil.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    # store path not writable (a path under a regular file: fails even for root)
    (tmp_path / "afile").write_text("x")
    d = copy.deepcopy(BASE)
    d["store"] = str(tmp_path / "afile" / "store")
    assert main(["run", _write(tmp_path, d)]) == 2
    assert "not writable" in capsys.readouterr().err
    # cluster address unreachable: a clear error, quickly
    d = copy.deepcopy(BASE)
    d["store"] = str(tmp_path / "store2")
    assert main(["run", _write(tmp_path, d), "--address", "127.0.0.1:1"]) == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert not list((tmp_path / "store2" / "metrics").glob("*.parquet"))
    # the plan was saved: status shows every planned trial as missing
    assert main(["status", str(tmp_path / "store2")]) == 0
    out = capsys.readouterr().out
    assert "final      multi_digits/hps/rlw" in out
    # status of a folder that is not a store
    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "not a litmus store" in capsys.readouterr().err


def test_gpu_asked_on_a_cluster_without_gpu(tmp_path, capsys):
    d = copy.deepcopy(BASE)
    d["resources"] = {"cpu": 1, "gpu": 0.5}
    d["store"] = str(tmp_path / "store")
    assert main(["run", _write(tmp_path, d), "--cpus", "1"]) == 2
    err = capsys.readouterr().err
    assert "resources.gpu" in err and "no CUDA GPU" in err
    assert not list((tmp_path / "store" / "metrics").glob("*.parquet"))


def test_fixed_weights_are_checked_against_each_dataset_task_count(tmp_path: Path) -> None:
    d = copy.deepcopy(BASE)
    d["datasets"] = [{"name": "scenes", "options": {"n_train": 8, "n_val": 4, "n_test": 4}, "epochs": 1}]
    d["methods"] = ["ew", {"name": "fixed", "params": {"task_weights": [1.0, 2.0, 1.0]}}]
    parse(d, base=tmp_path)  # three weights for three tasks: valid
    d["methods"][1]["params"]["task_weights"] = [1.0, 2.0]
    with pytest.raises(SpecError, match="methods\\[1\\].*task_weights"):
        parse(d, base=tmp_path)
