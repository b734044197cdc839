"""The trainer on the bundled benchmarks: determinism, divergence, gradient paths, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from trainables.config import TrainConfig, resolve
from trainables.batching import batches
from trainables.trainer import Diverged, Trainer

SMALL = {"n_train": 256, "n_val": 64, "n_test": 64, "width": 8}  # encoder width 8 (default 32): same code paths


def small(dataset: str = "multi_digits", **kw) -> TrainConfig:
    opts = dict(SMALL, **({"size": 16} if dataset == "scenes" else {}), **kw.pop("dataset_options", {}))
    return TrainConfig(dataset=dataset, dataset_options=opts, epochs=kw.pop("epochs", 2),
                       batch_size=kw.pop("batch_size", 64), **kw)


def values(trainer: Trainer) -> list[tuple]:
    return [(r.epoch, row["split"], row["task"], row["metric"], row["value"]) for r in trainer.epochs() for row in r.rows]


def test_same_seed_identical_metrics_different_seed_differs() -> None:
    a = values(Trainer(small(method="rlw", seed=3)))
    b = values(Trainer(small(method="rlw", seed=3)))
    c = values(Trainer(small(method="rlw", seed=4)))
    assert a == b
    assert a != c


def test_records_have_every_split_task_metric_each_epoch() -> None:
    tr = Trainer(small("scenes", epochs=1, dataset_options={"n_train": 32, "n_val": 8, "n_test": 8}))
    (res,) = list(tr.epochs())
    keys = {(r["split"], r["task"], r["metric"]) for r in res.rows}
    for split in ("train", "val", "test"):
        for task, metrics in {"segmentation": ["miou", "pixel_acc", "loss"], "depth": ["abs_err", "rel_err", "loss"],
                              "normal": ["mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30", "loss"]}.items():
            for m in metrics:
                assert (split, task, m) in keys
    hib = {(r["task"], r["metric"]): r["higher_is_better"] for r in res.rows}
    assert hib[("depth", "abs_err")] is False and hib[("segmentation", "miou")] is True
    s = tr.stats.summary()
    assert s["step_time_ms"] > 0 and s["peak_memory_mb"] > 0 and s["versions"]["torch"]


def test_huge_learning_rate_diverges_with_epoch_and_step() -> None:
    tr = Trainer(small(lr=1e30, optimizer="sgd", epochs=3, divergence_factor=None))  # the finiteness rule alone
    with pytest.raises(Diverged) as info:
        list(tr.epochs())
    assert info.value.epoch >= 1 and info.value.step >= 1
    assert "non-finite loss" in str(info.value)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method,space", [("ew", None), ("rlw", None), ("uw", None), ("rgw", "rep"), ("rgw", "param"),
                                          ("mgda", "param"), ("mgda_ub", "rep")])
def test_encoder_always_gets_a_nonzero_gradient(method: str, space: str | None) -> None:
    tr = Trainer(small(method=method, space=space, epochs=1))
    batch = next(iter(_first_batch(tr)))
    tr.train_step(batch, 1, 1)
    enc = [p.grad for p in tr.model.shared_parameters()]
    assert all(g is not None for g in enc)
    assert sum(float(g.abs().sum()) for g in enc) > 0


def _first_batch(tr: Trainer):
    return batches(tr.splits.train, tr.cfg.batch_size, torch.Generator().manual_seed(0), tr.device)


def test_rgw_rep_mode_equals_chain_rule_and_heads_get_unweighted_gradients() -> None:
    """RGW (Algorithm 2): encoder gets d(sum w_t L_t)/d theta through the representation; heads get dL_t/d head_t."""
    tr = Trainer(small(method="rgw", space="rep", epochs=1))
    ref = copy.deepcopy(tr.model)
    x, y = next(iter(_first_batch(tr)))
    gen_state = tr.grad_method.generator.get_state()
    tr.optimizer.step = lambda *a, **k: None  # keep parameters as they are
    tr.train_step((x, y), 1, 1)
    got = _grads(tr.model)
    g = torch.Generator()
    g.set_state(gen_state)
    # the RGW weights written out (Lin et al., Sec. 5.3): softmax of N(0, 1) draws, times T = 2 (E[w_t] = 1)
    w = 2 * torch.softmax(torch.randn(2, generator=g), dim=0)
    out = ref(x)
    losses = torch.stack([tr.bench.loss(t, out[t], y[t]) for t in tr.tasks])
    ref.zero_grad()
    (w * losses).sum().backward(inputs=list(ref.encoder.parameters()), retain_graph=True)
    losses.sum().backward(inputs=list(ref.heads.parameters()))
    want = _grads(ref)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5, rtol=1e-4), k


def test_param_space_jacobian_matches_per_task_backward() -> None:
    tr = Trainer(small(method="mgda", space="param", epochs=1))
    x, y = next(iter(_first_batch(tr)))
    out = tr.model(x)
    losses = torch.stack([tr.bench.loss(t, out[t], y[t]) for t in tr.tasks])
    batched = torch.cat([j.reshape(2, -1) for j in tr.jacobian(losses, tr.shared)], 1)
    rows = []
    for i in range(2):
        gs = torch.autograd.grad(losses[i], tr.shared, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    assert torch.allclose(batched, torch.stack(rows), atol=1e-6)


def test_checkpoint_resume_gives_identical_metrics() -> None:
    straight = values(Trainer(small(method="rlw", seed=1, epochs=3)))
    first = Trainer(small(method="rlw", seed=1, epochs=3))
    it = first.epochs()
    part = [(1, r["split"], r["task"], r["metric"], r["value"]) for r in next(it).rows]
    state = copy.deepcopy(first.state_dict())
    second = Trainer(small(method="rlw", seed=1, epochs=3))
    second.load_state_dict(state)
    rest = values(second)
    assert part + rest == straight


def test_method_parameters_are_trained_and_weights_logged() -> None:
    tr = Trainer(small(method="uw", epochs=1))
    before = tr.loss_method.log_var.detach().clone()
    (res,) = list(tr.epochs())
    assert not torch.equal(before, tr.loss_method.log_var.detach())
    assert set(res.weights) == {"left", "right"}


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"method": "ew", "space": "rep"}, "loss weighting"),
        ({"method": "mgda_ub", "space": "param"}, "cannot work in 'param'"),
        ({"method": "ew", "distribution": "normal"}, "takes none"),
        ({"method": "pcgrad+rlw"}, "LOSS\\+GRAD"),
        ({"method": "rlw", "distribution": "gauss"}, "unknown distribution"),
        ({"lr": 0.0}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"arch": "nope"}, "unknown architecture"),
        ({"dataset_options": {"bogus": 1}}, "unknown option"),
    ],
)
def test_bad_configs_fail_before_training(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        resolve(small(**kw))


@pytest.mark.parametrize("dataset", ["multi_digits", "scenes"])
def test_param_space_step_equals_the_direct_per_task_jacobian(dataset: str) -> None:
    """The trainer chains the Jacobian through the representation; it must equal per-task backward passes."""
    opts = {"n_train": 64, "n_val": 8, "n_test": 8}
    tr = Trainer(small(dataset, method="mgda", space="param", epochs=1, dataset_options=opts))
    ref, ref_method = copy.deepcopy(tr.model), copy.deepcopy(tr.grad_method)
    x, y = next(iter(_first_batch(tr)))
    tr.optimizer.step = lambda *a, **k: None
    tr.train_step((x, y), 1, 1)
    out = ref(x)
    losses = torch.stack([tr.bench.loss(t, out[t], y[t]) for t in tr.tasks])
    shared = ref.shared_parameters()
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[i], shared, retain_graph=True)])
            for i in range(len(tr.tasks))]
    want = ref_method.direction(torch.stack(rows), losses.detach())
    got = torch.cat([p.grad.reshape(-1) for p in tr.model.shared_parameters()])
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-3)
    for t in tr.tasks:  # heads: their own unweighted task gradients
        (g_head,) = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[tr.tasks.index(t)],
                                                                          ref.task_parameters(t), retain_graph=True)])]
        got_head = torch.cat([p.grad.reshape(-1) for p in tr.model.task_parameters(t)])
        assert torch.allclose(got_head, g_head, atol=1e-6, rtol=1e-4)


def test_methods_declare_the_architectures_spaces_and_datasets_they_support() -> None:
    from trainables import architectures, weighting

    hps, mtan = architectures.get("hps"), architectures.get("mtan")
    weighting.get("cagrad").check(hps, "rep")
    weighting.get("cagrad").check(mtan, "param", multi_input=True)
    for name, arch, space, multi, msg in [("rotograd", mtan, "rep", False, "single shared representation"),
                                          ("mgda", hps, "rep", False, "cannot work in 'rep'"),
                                          ("cagrad", hps, "rep", True, "multi-input"),
                                          ("auto_lambda", hps, None, True, "meta split"),
                                          ("stl", mtan, None, False, "arch hps or stl")]:
        with pytest.raises(ValueError, match=msg):
            weighting.get(name).check(arch, space, multi_input=multi)
    weighting.get("ew").check(mtan, None, multi_input=True)  # the base class's defaults: no capability needed


@pytest.mark.parametrize("dataset,arch", [("multi_digits", "hps"), ("multi_digits", "mtan"), ("scenes", "hps")])
def test_jacobian_paths_are_identical_and_the_choice_is_recorded(dataset: str, arch: str) -> None:
    """Whichever Jacobian path the measurement picks, training gives the same numbers (bit for bit here)."""
    from trainables import jacobian

    opts = {"n_train": 48, "n_val": 8, "n_test": 8}
    runs = {}
    for force in (None, "batched", "looped"):
        tr = Trainer(small(dataset, method="cagrad", space="param", arch=arch, epochs=1, dataset_options=opts,
                           batch_size=16, seed=2))
        tr.jacobian.force = force
        tr.jacobian.max_trials = 3  # decide after the 3 steps even if the times overlap
        x, y = next(iter(_first_batch(tr)))
        out = tr.model(x)
        losses = torch.stack([tr.bench.loss(t, out[t], y[t]) for t in tr.tasks])
        a, b = jacobian.batched(losses, tr.shared, torch.eye(2 if dataset == "multi_digits" else 3)), \
            jacobian.looped(losses, tr.shared, torch.eye(2 if dataset == "multi_digits" else 3))
        assert all(torch.equal(u, v) for u, v in zip(a, b))
        tr.optimizer.zero_grad()
        runs[force] = values(tr)
        if force is None:
            (choice,) = tr.stats.summary()["jacobian"].values()  # one batch shape: 3 steps of 16
            assert choice["path"] in ("batched", "looped") and choice["identical"] is True
            assert choice["batched_ms"] > 0 and choice["looped_ms"] > 0
    assert runs[None] == runs["batched"] == runs["looped"]


@pytest.mark.parametrize("method,optimizer,extra", [
    ("uw", "adam", {"weight_decay": 1e-3}),  # two parameter groups (UW's log-variances)
    ("ew", "adamw", {"weight_decay": 1e-2}),
    ("mgda", "sgd", {"momentum": 0.9, "weight_decay": 1e-3}),
])
def test_cpu_optimizer_foreach_is_bit_identical_to_torchs_single_tensor_loop(method, optimizer, extra) -> None:
    """The trainer's CPU optimiser runs torch's multi-tensor (foreach) path on the model; torch's own single-tensor
    implementation (the per-parameter loop, what torch picks by default on CPU) gives the same parameters
    and optimiser state, bit for bit, step after step."""
    cfg = small(method=method, optimizer=optimizer, lr=3e-3, seed=5, **extra)
    a, b = Trainer(cfg), Trainer(cfg)
    groups = a.optimizer.param_groups
    assert groups[0]["foreach"] is True and all(g["foreach"] is False for g in groups[1:])  # methods' groups: the loop
    assert len(groups) == (2 if method == "uw" else 1)
    for g in b.optimizer.param_groups:
        g["foreach"] = False
    data = list(batches(a.splits.train, a.cfg.batch_size, torch.Generator().manual_seed(0), torch.device("cpu")))
    for i, batch in enumerate(data):
        a.train_step(batch, 1, i + 1)
        b.train_step(batch, 1, i + 1)
    params_a = list(a.model.parameters()) + a.method_params
    params_b = list(b.model.parameters()) + b.method_params
    assert all(torch.equal(p, q) for p, q in zip(params_a, params_b))
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])
    assert not all(torch.equal(p, q) for p, q in zip(params_a, Trainer(cfg).model.parameters()))  # it trained
