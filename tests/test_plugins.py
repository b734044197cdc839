"""Plugins (third-party methods and datasets in litmus's registries) and ``litmus check-method``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import textwrap
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import ray

from study.cli import main
from study.spec import SpecError, parse
from trainables import conformance, plugins, weighting

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "my_method"
SMALL = {"n_train": 200, "n_val": 100, "n_test": 100, "width": 8}

LOSS_PLUGIN = '''
import torch
from trainables.weighting import HParam, LossWeighting, register

@register
class {cls}(LossWeighting):
    name = "{name}"
    paper = "test plugin"
    hparams = (HParam("scale", 1.0, low=0.5, high=2.0),)

    def __init__(self, num_tasks, scale=1.0):
        super().__init__(num_tasks)
        self.scale = scale

    def weights(self, losses):
        return self.scale * torch.ones_like(losses)
'''

DATASET_PLUGIN = '''
import torch
from torch import nn
from trainables.datasets import Benchmark, Defaults, Splits, TensorSplit, register


class MSE:
    directions = {"mse": False}

    def __init__(self):
        self.total, self.n = 0.0, 0

    def update(self, pred, target):
        self.total += float(((pred.squeeze(-1) - target) ** 2).sum())
        self.n += len(target)

    def compute(self):
        return {"mse": self.total / max(self.n, 1)}


@register
class TwoSines(Benchmark):
    """Two regression tasks on random inputs: sin and cos of a random projection (generated, bundled)."""

    name = "__NAME__"
    description = "test plugin dataset"
    tasks = ("sin", "cos")
    bundled = True
    defaults = Defaults(epochs=1, batch_size=32, lr=1e-2)

    def load(self):
        g = torch.Generator().manual_seed(0)

        def split(n):
            x = torch.randn(n, 5, generator=g)
            z = x @ torch.linspace(-1, 1, 5)
            return TensorSplit(x, {"sin": torch.sin(z), "cos": torch.cos(z)})

        return Splits(split(96), split(32), split(32))

    def encoder_blocks(self):
        return [nn.Sequential(nn.Linear(5, 16), nn.ReLU())]

    def head(self, task):
        return nn.Linear(16, 1)

    def loss(self, task, pred, target):
        return ((pred.squeeze(-1) - target) ** 2).mean()

    def accumulators(self):
        return {t: MSE() for t in self.tasks}
'''


def write(dir_: Path, name: str, text: str) -> Path:
    p = dir_ / name
    p.write_text(textwrap.dedent(text))
    return p


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_family_comes_from_the_registry():
    got = {n: weighting.family(n) for n in ("ew", "uw", "rlw", "rgw", "cagrad", "rlw+cagrad", "imtl", "ew+rgw")}
    assert got == {"ew": "loss", "uw": "loss", "rlw": "random", "rgw": "random", "cagrad": "gradient",
                   "rlw+cagrad": "gradient", "imtl": "gradient", "ew+rgw": "gradient"}


def test_file_plugin_is_listed_tuned_and_named_by_origin(tmp_path, capsys):
    f = write(tmp_path, "plug_listed.py", LOSS_PLUGIN.format(cls="Listed", name="plug_listed"))
    assert main(["methods", "--plugin", str(f)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "plug_listed" in x)
    assert "scale=1.0" in line and str(f) in line  # its HParam and its origin
    assert weighting.family("plug_listed") == "loss" and "plugin module plug_listed" in weighting.origin("plug_listed")
    # a spec validates its hyperparameters like a built-in's
    spec = parse({"name": "s", "store": str(tmp_path / "st"), "plugins": [str(f)],
                  "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": 1}],
                  "methods": ["ew", {"name": "plug_listed", "params": {"scale": 1.5}}],
                  "tuning": {"trials": 1}, "final": {"seeds": 1}})
    assert spec.plugins == [str(f)] and spec.method("plug_listed").params == {"scale": 1.5}


def test_plugin_dataset_trains_and_its_hash_is_recorded(tmp_path, capsys):
    f = write(tmp_path, "plug_sines.py", DATASET_PLUGIN.replace("__NAME__", "plug_sines"))
    store = tmp_path / "store"
    assert main(["datasets", "--plugin", str(f)]) == 0
    assert "plug_sines" in capsys.readouterr().out
    rc = main(["train", "--plugin", str(f), "--dataset", "plug_sines", "--method", "rlw", "--epochs", "2",
               "--device", "cpu", "--store", str(store)])
    assert rc == 0
    trials = pads.dataset(str(store / "trials"), format="parquet").to_table().to_pylist()
    assert len(trials) == 1 and trials[0]["status"] == "completed" and trials[0]["dataset"] == "plug_sines"
    assert json.loads(trials[0]["versions"])["plugins"]["plug_sines"] == sha(f)
    rows = pads.dataset(str(store / "metrics"), format="parquet").to_table().to_pandas()
    assert set(rows.task) == {"sin", "cos"} and set(rows.metric) == {"mse", "loss"} and rows.value.notna().all()


BROKEN = {
    "import error": ("import not_a_module_xyz\n", "ModuleNotFoundError: No module named 'not_a_module_xyz'"),
    "wrong base class": ("from trainables.weighting import register\n\n@register\nclass NotAMethod:\n"
                         "    name = 'not_a_method'\n", "is not a subclass of trainables.weighting.base.LossWeighting"),
    "clash with a built-in": (LOSS_PLUGIN.format(cls="MyEW", name="ew"),
                              "clashes with EW from litmus (trainables.weighting.ew)"),
    "nothing registered": ("X = 1\n", "registers no method, dataset or architecture"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_is_refused_before_ray_starts(tmp_path, capsys, case):
    text, message = BROKEN[case]
    stem = "plug_broken_" + case.replace(" ", "_").replace("-", "_")
    f = write(tmp_path, f"{stem}.py", text)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: b\nstore: {tmp_path / 'store'}\nplugins: [./{f.name}]\n"
                    "datasets: [{name: multi_digits, options: {n_train: 200, n_val: 100, n_test: 100}}]\n"
                    "methods: [ew]\n")
    ray.shutdown()  # an earlier test module may have left one running
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"litmus: error: plugins[0]: plugin ./{f.name}") and message in err[0]
    assert not ray.is_initialized() and not (tmp_path / "store").exists()
    assert stem not in sys.modules  # a failed import leaves no half-imported module behind


def test_two_plugins_with_one_name_are_refused_with_both_origins(tmp_path):
    a = write(tmp_path, "plug_twin_a.py", LOSS_PLUGIN.format(cls="TwinA", name="plug_twin"))
    b = write(tmp_path, "plug_twin_b.py", LOSS_PLUGIN.format(cls="TwinB", name="plug_twin"))
    plugins.load([str(a)])
    with pytest.raises(plugins.PluginError) as err:
        plugins.load([str(b)])
    msg = str(err.value)
    assert f"plugin {b}" in msg and f"({b})" in msg and f"({a})" in msg and "plug_twin" in msg


def test_entry_point_plugins_are_found_without_naming_them(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "plug_ep_pkg").mkdir(parents=True)
    write(site / "plug_ep_pkg", "__init__.py", LOSS_PLUGIN.format(cls="EntryPointed", name="plug_ep"))
    dist = site / "plug_ep_dist-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-ep-dist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[litmus.methods]\nplug_ep = plug_ep_pkg\n")
    monkeypatch.syspath_prepend(str(site))
    assert "plug_ep" not in weighting.names()
    loaded = plugins.load_entry_points()
    assert "plug_ep" in weighting.names()
    p = next(p for p in loaded if p.module == "plug_ep_pkg")
    assert p.ship == str(site / "plug_ep_pkg")  # not in site-packages: would travel with a Ray job


def test_installed_entry_points_are_read_once_per_sys_path(tmp_path, monkeypatch):
    """Every spec parse asks for the entry-point plugins; the installed distributions' metadata is read once
    (per ``sys.path``: a site dir added later is read, as above)."""
    import importlib.metadata

    calls = []
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: calls.append(kw) or real(**kw))
    monkeypatch.syspath_prepend(str(tmp_path))  # a sys.path this process has not read yet
    first = plugins.load_entry_points()
    assert len(calls) == len(plugins.ENTRY_POINT_GROUPS)
    assert plugins.load_entry_points() == first and len(calls) == len(plugins.ENTRY_POINT_GROUPS)
    monkeypatch.syspath_prepend(str(tmp_path / "other"))
    plugins.load_entry_points()
    assert len(calls) == 2 * len(plugins.ENTRY_POINT_GROUPS)


WRONG_METHODS = '''
import torch
from trainables.weighting import HParam, LossWeighting, register

@register
class SumsToOne(LossWeighting):
    """Softmax weights left on the simplex: they sum to 1 instead of T."""
    name = "plug_sums_to_one"

    def weights(self, losses):
        return torch.softmax(losses, dim=0)

@register
class IgnoresItsSeed(LossWeighting):
    """Random weights from the global RNG: the seeded generator is ignored."""
    name = "plug_ignores_seed"
    draws_random = True
    hparams = (HParam("seed", 0, kind="int", tunable=False),)

    def __init__(self, num_tasks, generator=None, seed=0):
        super().__init__(num_tasks, generator)

    def weights(self, losses):
        return 2 * torch.rand(self.num_tasks, dtype=losses.dtype)

@register
class WrongClosedForm(LossWeighting):
    """Learned weights exp(s) with a closed form of the objective's gradient that drops the regulariser's -1."""
    name = "plug_wrong_closed_form"

    def __init__(self, num_tasks):
        super().__init__(num_tasks)
        self.s = torch.nn.Parameter(torch.zeros(num_tasks))

    def optimizer_params(self):
        return [self.s]

    def weights(self, losses):
        return torch.exp(self.s).to(losses.dtype)

    def regularizer(self):
        return -self.s.sum()

    def objective_grads(self, losses, w):
        return [w * losses]
'''


def test_check_method_catches_wrong_methods(tmp_path, capsys):
    f = write(tmp_path, "plug_wrong.py", WRONG_METHODS)
    assert main(["check-method", "plug_sums_to_one", "--plugin", str(f), "--no-train"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  scale convention: mean weight per task at unit losses is 0.25, expected 1 (sum 1 instead of 4" in out
    assert "PASS  seeded determinism" in out and "7/8 properties hold; 1 FAILED" in out
    assert main(["check-method", "plug_wrong_closed_form", "--plugin", str(f), "--no-train"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  own objective's gradients: parameter 0: closed-form gradient" in out and "7/8 properties hold" in out
    assert main(["check-method", "plug_ignores_seed", "--plugin", str(f), "--no-train"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  seeded determinism: the same seed gave different outputs" in out
    assert "FAIL  checkpoint/restore" in out and "PASS  scale convention" in out
    assert main(["check-method", "no_such_method"]) == 2


@pytest.mark.parametrize("name", weighting.names())
def test_litmus_methods_pass_the_bare_tensor_checks(name):
    failed = [c for c in conformance.check_method(name, train=False) if not c.ok]
    assert not failed, conformance.report(name, failed)


@pytest.mark.parametrize("name", ["rlw", "pcgrad"])
def test_litmus_methods_pass_the_training_checks(name):
    checks = conformance.check_method(name)
    assert len(checks) == 12 and all(c.ok for c in checks), conformance.report(name, checks)


def _example_spec(tmp_path: Path, name: str, extra_plugin: Path | None = None) -> dict:
    return {
        "name": name, "store": str(tmp_path / "store"),
        "plugins": [str(EXAMPLE / "my_method")] + ([str(extra_plugin)] if extra_plugin else []),
        "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": 1}],
        "methods": ["ew", "rlw", "softmax_loss"], "tuning": {"methods": "none"}, "final": {"seeds": 1},
    }


def _trials(root: Path) -> list[dict]:
    """Trial records through the store's reader (the driver compacts per-trial files at each stage's end)."""
    from analysis.store import load_trials

    if not (root / "trials").exists() and not (root / "compacted").exists():
        return []
    return load_trials(root).astype(object).to_dict("records")


@pytest.mark.slow
def test_example_plugin_in_a_local_study(tmp_path):
    from study.run import run_study

    spec = parse(_example_spec(tmp_path, "example"))
    try:
        res = run_study(spec, say=lambda m: None, num_cpus=2)
    finally:
        ray.shutdown()
    assert res.counts == {"completed": 3, "failed": 0, "diverged": 0, "missing": 0}
    trials = {t["method"]: t for t in _trials(spec.store)}
    assert set(trials) == {"ew", "rlw", "softmax_loss"}
    # its family, from its class through the registry, is in the trials table like a built-in's
    assert {m: t["family"] for m, t in trials.items()} == {"ew": "loss", "rlw": "random", "softmax_loss": "loss"}
    h = plugins.source_hash(EXAMPLE / "my_method")
    # the workers imported the shipped copy (same source hash as the driver's)
    assert json.loads(trials["softmax_loss"]["versions"])["plugins"] == {"my_method": h}


@pytest.mark.slow
def test_example_plugin_on_a_multi_node_cluster_via_the_runtime_env(tmp_path):
    from ray.cluster_utils import Cluster

    from study.run import run_study

    assert str(EXAMPLE) not in os.environ.get("PYTHONPATH", "")  # workers can only get it from the runtime env
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})  # two nodes: the head and one more
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    spec = parse(_example_spec(tmp_path, "nodes"))
    try:
        res = run_study(spec, address=cluster.address, say=lambda m: None)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert res.counts == {"completed": 3, "failed": 0, "diverged": 0, "missing": 0}
    trials = {t["method"]: t for t in _trials(spec.store)}
    assert json.loads(trials["softmax_loss"]["versions"])["plugins"]["my_method"] == \
        plugins.source_hash(EXAMPLE / "my_method")
    assert len({t["host"] for t in trials.values()}) >= 1


@pytest.mark.slow
def test_a_plugin_that_workers_cannot_import_is_named_with_its_node_before_any_trial(tmp_path):
    from study.run import run_study

    # importable on this driver process only: on a Ray worker it needs a module that is not installed
    f = write(tmp_path, "plug_driver_only.py",
              f"import os\nif os.getpid() != {os.getpid()}:\n    import plug_missing_dependency_xyz\n"
              + LOSS_PLUGIN.format(cls="DriverOnly", name="plug_driver_only"))
    spec = parse(_example_spec(tmp_path, "missing", extra_plugin=f))
    with pytest.raises(ValueError) as err:
        try:
            run_study(spec, say=lambda m: None, num_cpus=1)
        finally:
            ray.shutdown()
    msg = str(err.value)
    assert "plugin module plug_driver_only: ModuleNotFoundError" in msg and "plug_missing_dependency_xyz" in msg
    assert "on node " in msg and f"({socket.gethostname()})" in msg
    assert not (spec.store / "trials").exists() or not _trials(spec.store)
