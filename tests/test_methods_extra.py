"""Issue 7's methods against their papers' defining behaviour (SI, EDM, CDTT, fixed-weight extraction,
STL, IGBv2, RotoGrad, MOML, Auto-Lambda), and one short end-to-end epoch each through the trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.cli import main as litmus_main
from study.fixed_weights import ema_last, extract_fixed_weights
from study.store import Store
from trainables import weighting
from trainables.weighting.cdtt import tension


# --- SI -------------------------------------------------------------------------------------
def test_si_effective_weights_are_inverse_losses_and_match_autograd() -> None:
    losses = torch.tensor([0.5, 2.0, 4.0], requires_grad=True)
    w = weighting.build("si", 3).weights(losses.detach())
    assert torch.allclose(w, 1.0 / losses.detach())
    (grad,) = torch.autograd.grad(torch.log(losses).sum(), losses)
    assert torch.allclose(w, grad)
    with pytest.raises(ValueError, match="positive"):
        weighting.build("si", 2).weights(torch.tensor([1.0, 0.0]))


# --- EDM ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_edm_direction_makes_equal_angles_with_unit_gradients(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.01, 1.0, 50.0])[:, None]
    jac = torch.randn(3, 40, generator=g, dtype=torch.float64) * scales  # very different norms
    m = weighting.build("edm", 3)
    d = m.direction(jac, torch.ones(3, dtype=torch.float64))
    cos = (jac / jac.norm(dim=1, keepdim=True)) @ d / d.norm()
    assert torch.allclose(cos, cos.mean().expand(3), atol=1e-6), cos
    assert float(cos.min()) > 0
    # the effective weights reproduce the direction and are T * a convex combination
    assert torch.allclose(m.last_weights @ jac, d)
    assert float(m.last_weights.sum()) == pytest.approx(3.0) and bool((m.last_weights >= 0).all())


def test_edm_identical_gradients_give_t_times_g_and_zero_gradient_gives_zero() -> None:
    gvec = torch.randn(20, dtype=torch.float64)
    m = weighting.build("edm", 4)
    assert torch.allclose(m.direction(gvec.expand(4, 20).clone(), torch.ones(4, dtype=torch.float64)), 4 * gvec)
    jac = torch.randn(4, 20, dtype=torch.float64)
    jac[1] = 0
    assert torch.equal(m.direction(jac, torch.ones(4, dtype=torch.float64)), torch.zeros(20, dtype=torch.float64))
    assert m.zero_steps == 1


# --- CDTT -----------------------------------------------------------------------------------
def _jacobians(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(3, 30, generator=g, dtype=torch.float64)
    return [base + 0.3 * torch.randn(3, 30, generator=g, dtype=torch.float64) for _ in range(n)]


@pytest.mark.parametrize("alpha", [0.0, 0.2, 1.0])
def test_cdtt_equals_edm_until_its_window_is_full(alpha: float) -> None:
    edm, cdtt = weighting.build("edm", 3), weighting.build("cdtt", 3, alpha=alpha, window=5)
    losses = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    for i, jac in enumerate(_jacobians(8)):
        de, dc = edm.direction(jac, losses), cdtt.direction(jac, losses)
        if i < 5:  # no tension before the window is full and a previous window sum exists
            assert torch.allclose(de, dc) and cdtt.last_tension is None
        else:
            assert cdtt.last_tension is not None and not torch.allclose(de, dc)


def test_cdtt_tension_formula_and_alpha_zero_is_constant_tension_not_edm() -> None:
    p = np.array([-3.0, 0.0, 1.0, 4.0])
    assert np.allclose(tension(p, 0.0), 1.0)  # published formula: alpha = 0 -> constant tension 1
    assert tension(np.array([1.0]), 1.0)[0] == pytest.approx(0.5)
    expected = 0.6 / (1 + np.exp(-p * math.e + math.e)) + 0.4
    assert np.allclose(tension(p, 0.6), expected)


def test_cdtt_direction_is_edm_plus_tension_vector_and_never_opposes_a_task() -> None:
    m = weighting.build("cdtt", 3, alpha=0.6, window=2)
    losses = torch.tensor([0.3, 1.0, 3.0], dtype=torch.float64)
    for jac in _jacobians(12, seed=3):
        d = m.direction(jac, losses)
        assert torch.allclose(m.last_weights @ jac, d)
        assert bool(((jac @ d) >= -1e-9 * d.norm() * jac.norm(dim=1)).all())
        if m.last_tension is not None and bool(((jac @ d) > 1e-9).all()):
            edm = weighting.build("edm", 3)
            de = edm.direction(jac, losses) / 3  # convex EDM direction
            tau = torch.from_numpy(m.last_tension)
            units = (jac - de) / (jac - de).norm(dim=1, keepdim=True)
            assert torch.allclose(d, 3 * (de + tau @ units), atol=1e-8)


# --- fixed weights extracted from a trial ------------------------------------------------------
def test_fixed_weight_extraction_equals_hand_computed_ema(tmp_path, capsys) -> None:
    store = Store(tmp_path / "store")
    per_epoch = {1: {"a": 1.0, "b": 3.0}, 2: {"a": 2.0, "b": 2.0}, 3: {"a": 3.0, "b": 1.0}}
    store.write_weights("s", "trialX", per_epoch)
    # by hand: normalised epochs (0.25, 0.75), (0.5, 0.5), (0.75, 0.25); EMA beta 0.9 from the first
    a = 0.25
    a = 0.9 * a + 0.1 * 0.5
    a = 0.9 * a + 0.1 * 0.75
    expected = [2 * a, 2 * (1 - a)]  # sums to T = 2
    got = extract_fixed_weights(store.root, "trialX", beta=0.9)
    assert got == pytest.approx(expected, abs=1e-12)
    assert ema_last([[1.0, 3.0]], 0.5) == pytest.approx([0.5, 1.5])
    # the fixed method accepts them and keeps them
    w = weighting.build("fixed", 2, task_weights=got).weights(torch.ones(2))
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float32))
    with pytest.raises(ValueError, match="no recorded weights"):
        extract_fixed_weights(store.root, "missing")
    # the CLI prints a spec entry with them
    assert litmus_main(["fixed-weights", str(store.root), "trialX", "--beta", "0.9"]) == 0
    import yaml

    (entry,) = yaml.safe_load(capsys.readouterr().out)
    assert entry["name"] == "fixed" and entry["params"]["task_weights"] == pytest.approx(expected)


# --- STL ------------------------------------------------------------------------------------
from trainables.config import TrainConfig, resolve  # noqa: E402
from trainables.batching import DATA_STREAM, batches  # noqa: E402
from trainables.paths import predict  # noqa: E402
from trainables.trainer import Trainer  # noqa: E402

SMALL = {"n_train": 256, "n_val": 64, "n_test": 64, "width": 8}  # encoder width 8 (default 32 and 16)
SCENES = {"n_train": 32, "n_val": 8, "n_test": 8, "size": 16, "width": 8}


def small(dataset: str = "multi_digits", **kw) -> TrainConfig:
    opts = dict(SMALL if dataset == "multi_digits" else SCENES, **kw.pop("dataset_options", {}))
    return TrainConfig(dataset=dataset, dataset_options=opts, epochs=kw.pop("epochs", 1), batch_size=kw.pop("batch_size", 64),
                       **kw)


def test_stl_builds_separate_models_with_no_shared_parameter() -> None:
    tr = Trainer(small(method="stl"))
    model = tr.model
    assert type(model).__name__ == "STL" and tr.cfg.arch == "hps"  # the spec's arch is kept; one model per task
    assert model.shared_parameters() == [] and tr.shared == []
    ids = {t: {id(p) for p in model.task_parameters(t)} for t in tr.tasks}
    assert not ids["left"] & ids["right"]
    assert ids["left"] | ids["right"] == {id(p) for p in model.parameters()}
    x, y = next(batches(tr.splits.train, 16, None, torch.device("cpu")))
    loss = tr.bench.loss("left", model(x)["left"], y["left"])
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    for p, g in zip(model.parameters(), grads):
        if id(p) in ids["right"]:
            assert g is None or not g.any()  # the left head never sees the right encoder
    # both tasks' models start from the same single-task initialisation (the trial's seed)
    for a, b in zip(model.encoders["left"].parameters(), model.encoders["right"].parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="nothing"):
        resolve(small(method="stl+cagrad"))
    with pytest.raises(ValueError, match="arch"):
        resolve(small(method="stl", arch="mtan"))
    with pytest.raises(ValueError, match="grad_clip"):
        resolve(small(method="stl", grad_clip=1.0))


def test_stl_metrics_equal_single_task_runs_with_the_same_seed() -> None:
    seed = 5
    tr = Trainer(small(method="stl", seed=seed, epochs=2))
    results = list(tr.epochs())
    got = {(r["task"], r["metric"]): r["value"] for r in results[-1].rows if r["split"] == "test"}
    cfg, bench = tr.cfg, tr.bench
    for task in bench.tasks:  # an independent single-task training with the same seed and batches
        torch.manual_seed(seed)
        enc = torch.nn.Sequential(*bench.encoder_blocks())
        head = bench.head(task)
        opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed + DATA_STREAM)
        for _ in range(cfg.epochs):
            enc.train(), head.train()
            for x, y in batches(tr.splits.train, cfg.batch_size, gen, torch.device("cpu")):
                opt.zero_grad()
                bench.loss(task, head(bench.head_input(enc(x), x)), y[task]).backward()
                opt.step()
        enc.eval(), head.eval()
        acc = bench.accumulators()[task]
        with torch.no_grad():
            for x, y in batches(tr.splits.test, cfg.eval_batch_size, None, torch.device("cpu")):
                out = head(bench.head_input(enc(x), x))
                acc.update(out, y[task])
                loss = float(bench.loss(task, out, y[task]))
        for metric, value in acc.compute().items():
            assert got[(task, metric)] == pytest.approx(float(value), abs=1e-6), (task, metric)
        assert got[(task, "loss")] == pytest.approx(loss, rel=1e-5)  # one test batch (64 <= eval batch)


# --- IGBv2 ----------------------------------------------------------------------------------
def _run_igb(seed: int, epochs: int = 3, steps: int = 12, **hp) -> tuple[list[torch.Tensor], object]:
    m = weighting.build("igb_v2", 3, seed=seed, warmup_epochs=2, update_after=1, update_every=4, sac_batch=32,
                        hidden=16, **hp)
    g = torch.Generator().manual_seed(99)
    out, losses = [], torch.tensor([1.0, 2.0, 0.5])
    for e in range(1, epochs + 1):
        for _ in range(steps):
            losses = losses * (0.9 + 0.15 * torch.rand(3, generator=g))
            out.append(m.weights(losses) * losses)  # the action (weights on the log losses)
        m.end_epoch(e, losses)
    return out, m


def test_igb_v2_warmup_weights_are_random_with_unit_mean() -> None:
    m = weighting.build("igb_v2", 3, seed=0, warmup_epochs=5)
    losses = torch.tensor([0.5, 1.0, 2.0])
    actions = torch.stack([m.weights(losses) * losses for _ in range(4000)])
    assert torch.allclose(actions.sum(1), torch.full((4000,), 3.0), atol=1e-4)
    assert actions.std(0).min() > 0.1  # random, not constant
    assert torch.allclose(actions.mean(0), torch.ones(3), atol=0.05)
    m2 = weighting.build("igb_v2", 3, seed=0, warmup_epochs=5)
    eff = m2.weights(losses)  # effective weights on the raw losses: w / L, with w the first warm-up draw
    assert torch.allclose(eff * losses, actions[0])


def test_igb_v2_agent_is_seeded_and_learns_from_min_normalised_decrease() -> None:
    torch.manual_seed(0)
    a, ma = _run_igb(seed=4)
    torch.manual_seed(1)  # the global RNG must not matter
    torch.rand(10)
    b, _ = _run_igb(seed=4)
    c, _ = _run_igb(seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert ma.agent.updates > 0 and ma.buffer.size == 2 * 12  # transitions from the second epoch on
    # agent actions (third epoch) are weights on the simplex times T
    for w in a[24:]:
        assert float(w.sum()) == pytest.approx(3.0, abs=1e-4) and bool((w > 0).all())
    # rewards are the worst task's loss decrease normalised by the first epoch's losses
    s, s2, r = ma.buffer.state[0], ma.buffer.next_state[0], ma.buffer.reward[0, 0]
    assert float(r) == pytest.approx(float(((s - s2) / ma.base).min()), rel=1e-5)


# --- RotoGrad -------------------------------------------------------------------------------
def test_rotograd_rotations_stay_orthogonal_and_heads_see_the_rotated_representation() -> None:
    tr = Trainer(small(method="rotograd", batch_size=32, lr=1e-2))
    list(tr.epochs())
    rot = tr.grad_method.rotations().detach()
    eye = torch.eye(rot.shape[-1])
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye.expand_as(rot), atol=1e-4)
    assert float((rot - eye).abs().max()) > 1e-3  # the rotations were learned
    x, _ = next(batches(tr.splits.test, 16, None, torch.device("cpu")))
    tr.model.eval()
    with torch.no_grad():
        z = tr.model.encode(x)
        out = predict(tr.parts, x)
        for i, t in enumerate(tr.tasks):
            assert torch.allclose(out[t], tr.model.heads[t](z @ rot[i].T), atol=1e-5)
        assert not torch.allclose(out["left"], tr.model(x)["left"], atol=1e-5)


def test_rotograd_rotations_align_task_gradients_with_the_update() -> None:
    m = weighting.build("rotograd", 2, lr_ratio=1.0)
    m.set_base_lr(0.05)
    g = torch.Generator().manual_seed(0)
    jac = torch.randn(2, 8, 6, generator=g)  # [T, batch, features]: gradients w.r.t. z
    jac[1] = -jac[0] + 0.3 * torch.randn(8, 6, generator=g)  # strongly conflicting tasks

    h = jac  # dL_t/dr_t, held fixed; at rotation R_t the Jacobian w.r.t. z is R_t^T h_t (rows: h_t @ R_t)

    def jac_at() -> torch.Tensor:
        rot = m.rotations().detach()
        return torch.stack([h[t] @ rot[t] for t in range(2)])

    def mean_cos() -> float:
        g_z = jac_at().flatten(1)
        return float(torch.nn.functional.cosine_similarity(g_z, g_z.sum(0).expand_as(g_z)).mean())

    m.direction(h, torch.ones(2))  # creates the rotations (identity) and takes a first step
    before = mean_cos()
    for _ in range(50):
        m.direction(jac_at(), torch.ones(2))
    assert mean_cos() > before + 0.05


# --- MOML / Auto-Lambda -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["moml", "auto_lambda"])
def test_bilevel_meta_split_is_held_out_training_data(name: str) -> None:
    tr = Trainer(small(method=name, max_steps_per_epoch=2))
    full = tr.bench.load()
    meta, kept = set(tr.meta.indices.tolist()), set(tr.meta.train_indices.tolist())
    assert not meta & kept and meta | kept == set(range(len(full.train)))
    assert len(meta) == round(0.1 * len(full.train))
    assert torch.equal(tr.meta.split.inputs, full.train.inputs[tr.meta.indices])
    assert torch.equal(tr.splits.train.inputs, full.train.inputs[tr.meta.train_indices])
    assert tr.splits.val is not None and torch.equal(tr.splits.val.inputs, full.val.inputs)
    assert torch.equal(tr.splits.test.inputs, full.test.inputs)
    # no meta example is a validation or test example
    flat = lambda s: {tuple(r.flatten().tolist()) for r in s.inputs}  # noqa: E731
    assert not flat(tr.meta.split) & (flat(full.val) | flat(full.test))
    list(tr.epochs())
    assert tr.loss_method.meta_steps == 2


class _TwoTaskLinear(torch.nn.Module):
    """Task a's training data predict its meta data; task b's training targets are noise."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = torch.nn.Linear(4, 4, bias=False)
        self.a = torch.nn.Linear(4, 1, bias=False)
        self.b = torch.nn.Linear(4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.shared(x)
        return {"a": self.a(h)[:, 0], "b": self.b(h)[:, 0]}


@pytest.mark.parametrize("name", ["moml", "auto_lambda"])
def test_bilevel_weights_move_toward_the_task_whose_meta_loss_drops(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = _TwoTaskLinear()
    w_true = torch.randn(4, generator=g)
    x, xm = torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g)
    train = (x, {"a": x @ w_true, "b": torch.randn(64, generator=g) * 3})  # b: fitting noise never helps
    meta = (xm, {"a": xm @ w_true, "b": torch.zeros(64)})

    def loss_fn(ps: dict, b: tuple) -> torch.Tensor:
        out = torch.func.functional_call(model, ps, (b[0],))
        return torch.stack([((out[t] - b[1][t]) ** 2).mean() for t in ("a", "b")])

    m = weighting.build(name, 2, outer_lr=0.05, inner_lr=0.05)
    params = dict(model.named_parameters())
    for _ in range(20):
        m.meta_step(loss_fn, params, train, meta)
    w = m.weights(torch.ones(2))
    assert float(w[0]) > float(w[1]), w


# --- end to end through the trainer ------------------------------------------------------------
E2E = ["si", "edm", "cdtt", "stl", "igb_v2", "igb_v2+nash_mtl", "rotograd", "moml", "auto_lambda"]


@pytest.mark.parametrize("dataset", ["multi_digits", "scenes"])
@pytest.mark.parametrize("method", E2E)
def test_method_trains_one_short_epoch(method: str, dataset: str) -> None:
    opts = {"n_train": 64, "n_val": 8, "n_test": 8}
    tr = Trainer(small(dataset, method=method, batch_size=16, max_steps_per_epoch=3, dataset_options=opts))
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    assert {r["split"] for r in res.rows} == {"train", "val", "test"}
    if method not in ("rotograd",):
        assert res.weights is not None and all(math.isfinite(w) for w in res.weights.values())
