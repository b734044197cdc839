"""Method-specific correctness of the gradient methods, against independent solves and hand-made cases."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from trainables.weighting import registry

F64 = torch.float64


def _conflicting(t: int, p: int, seed: int) -> torch.Tensor:
    """Random task gradients with a common component (so that the methods' solutions are interior)
    and enough spread for conflicts."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(t, p, generator=gen, dtype=F64) + 0.3 * torch.randn(1, p, generator=gen, dtype=F64)


# --- PCGrad ------------------------------------------------------------------------------------


def _pc_project(j: torch.Tensor, i: int, order: tuple[int, ...]) -> torch.Tensor:
    g = j[i].clone()
    for k in order:
        dot = g @ j[k]
        if dot < 0:
            g = g - dot / (j[k] @ j[k]) * j[k]
    return g


def test_pcgrad_hand_made_two_tasks() -> None:
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=F64)
    d = registry.build("pcgrad", 2).direction(j, torch.ones(2, dtype=F64))
    # g1 - (g1.g2)/|g2|^2 g2 = [0.5, 0.5];  g2 - (g2.g1)/|g1|^2 g1 = [0, 1]
    torch.testing.assert_close(d, torch.tensor([0.5, 1.5], dtype=F64))


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_two_tasks_no_conflict_left(seed: int) -> None:
    j = _conflicting(2, 6, seed)
    d = registry.build("pcgrad", 2).direction(j, torch.ones(2, dtype=F64))
    pc = [_pc_project(j, 0, (1,)), _pc_project(j, 1, (0,))]
    torch.testing.assert_close(d, pc[0] + pc[1])
    for i, k in ((0, 1), (1, 0)):
        assert pc[i] @ j[k] >= -1e-10
    if j[0] @ j[1] < 0:  # a conflicting pair was really projected
        assert not torch.allclose(d, j.sum(0))


@pytest.mark.parametrize("seed", range(4))
def test_pcgrad_three_tasks_matches_some_random_order(seed: int) -> None:
    """The direction is sum_i g_i^PC for one order per task; g_i^PC conflicts with no task projected last."""
    j = _conflicting(3, 5, seed)
    m = registry.build("pcgrad", 3, generator=torch.Generator().manual_seed(seed))
    for _ in range(3):
        d = m.direction(j, torch.ones(3, dtype=F64))
        matches = []
        for combo in itertools.product(*[list(itertools.permutations([k for k in range(3) if k != i]))
                                         for i in range(3)]):
            pcs = [_pc_project(j, i, combo[i]) for i in range(3)]
            if torch.allclose(sum(pcs), d, atol=1e-9):
                matches.append((combo, pcs))
        assert matches, "direction is not a PCGrad combination for any projection order"
        combo, pcs = matches[0]
        for i in range(3):
            assert pcs[i] @ j[combo[i][-1]] >= -1e-9


# --- MGDA --------------------------------------------------------------------------------------


def _qp_min_norm(g: np.ndarray) -> np.ndarray:
    t = g.shape[0]
    res = minimize(lambda a: a @ g @ a, np.full(t, 1 / t), jac=lambda a: 2 * g @ a, bounds=[(0, 1)] * t,
                   constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1}], method="SLSQP",
                   options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success
    return res.x


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
@pytest.mark.parametrize("seed", range(4))
def test_mgda_is_the_min_norm_point(normalization: str, seed: int) -> None:
    t = 2 + seed
    j = _conflicting(t, 8, seed)
    losses = torch.rand(t, generator=torch.Generator().manual_seed(seed), dtype=F64) + 0.2
    norms = j.norm(dim=1)
    n = {"none": torch.ones(t, dtype=F64), "l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    jn = j / n[:, None]
    alpha = torch.from_numpy(_qp_min_norm((jn @ jn.T).numpy()))
    reference = alpha @ jn  # the min-norm point of the hull of the normalised gradients
    for name in ("mgda", "mgda_ub"):
        m = registry.build(name, t, normalization=normalization)
        jj = j if name == "mgda" else j.reshape(t, 2, 4)
        d = m.direction(jj, losses).reshape(-1) / t
        assert float(d @ d) <= float(reference @ reference) * (1 + 1e-6)
        torch.testing.assert_close(d, reference, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(m.last_weights, t * alpha / n, rtol=1e-3, atol=1e-4)


def test_mgda_loss_normalization_needs_positive_losses() -> None:
    m = registry.build("mgda", 2, normalization="loss")
    with pytest.raises(RuntimeError, match="positive losses"):
        m.direction(torch.randn(2, 3, dtype=F64), torch.tensor([0.5, -0.1], dtype=F64))


# --- IMTL-G ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_imtl_g_equal_projections(seed: int) -> None:
    t = 2 + seed
    j = _conflicting(t, 7, seed)
    m = registry.build("imtl_g", t)
    d = m.direction(j, torch.ones(t, dtype=F64))
    proj = (j / j.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(proj, proj.mean().expand(t), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(m.last_weights.sum(), torch.tensor(float(t), dtype=F64))
    # representation-shaped Jacobian: same answer, reshaped
    d_rep = registry.build("imtl_g", t).direction(j.reshape(t, 7, 1), torch.ones(t, dtype=F64))
    torch.testing.assert_close(d_rep.reshape(-1), d)


# --- CAGrad ------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("seed", range(3))
def test_cagrad_ball_and_worst_task_improvement(c: float, seed: int) -> None:
    t, p = 3, 5
    j = _conflicting(t, p, seed)
    m = registry.build("cagrad", t, c=c, rescale=0)
    d = m.direction(j, torch.ones(t, dtype=F64)) / t  # the paper's mean-based d
    g0 = j.mean(0)
    radius = c * float(g0.norm())
    assert float((d - g0).norm()) <= radius * (1 + 1e-4)
    # independent primal solve: max_d min_t g_t . d  s.t. |d - g0| <= c |g0|
    x, s = cp.Variable(p), cp.Variable()
    jn, g0n = j.numpy(), g0.numpy()
    prob = cp.Problem(cp.Maximize(s), [jn @ x >= s, cp.norm(x - g0n, 2) <= radius])
    prob.solve(solver=cp.ECOS)
    assert prob.status == cp.OPTIMAL
    worst = float((j @ d).min())
    assert worst == pytest.approx(prob.value, rel=1e-3, abs=1e-6)
    # the default rescale divides by 1 + c^2
    d1 = registry.build("cagrad", t, c=c).direction(j, torch.ones(t, dtype=F64)) / t
    torch.testing.assert_close(d1 * (1 + c * c), d, rtol=1e-4, atol=1e-7)


# --- Nash-MTL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_nash_mtl_bargaining_condition(seed: int) -> None:
    t = 2 + seed
    j = _conflicting(t, 10, seed) * (0.1 + seed)  # several gradient scales
    m = registry.build("nash_mtl", t, max_norm=0.0, max_iter=100)
    d = m.direction(j, torch.ones(t, dtype=F64))
    w = m.last_weights
    assert (w > 0).all()
    g = j @ j.T
    residual = (g @ w - 1 / w).norm() / (1 / w).norm()
    assert residual < 1e-8
    assert float(d.norm()) == pytest.approx(t**0.5, rel=1e-2)  # |J^T w|^2 = w^T G w = T


def test_nash_mtl_clips_and_reuses_weights() -> None:
    j = _conflicting(3, 10, 0) * 5
    m = registry.build("nash_mtl", 3, update_every=3)
    d0 = m.direction(j, torch.ones(3, dtype=F64))
    w0 = m.last_weights.clone()
    assert float(d0.norm()) == pytest.approx(1.0, rel=1e-6)  # sqrt(3) > max_norm = 1
    m.direction(j * 2, torch.ones(3, dtype=F64))
    # the same bargaining weights are reused (then clipped for the new Jacobian)
    w1 = m.last_weights
    torch.testing.assert_close(w1 / w1.sum(), w0 / w0.sum())


def test_nash_mtl_zero_gradient_task_raises() -> None:
    m = registry.build("nash_mtl", 2)
    with pytest.raises(RuntimeError, match=r"nash_mtl.*step 0"):
        m.direction(torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=F64), torch.ones(2, dtype=F64))


def test_nash_mtl_without_a_bargaining_solution_raises() -> None:
    """0 in the convex hull of the gradients (here g_2 = -g_1): f is unbounded below, no solution."""
    m = registry.build("nash_mtl", 2)
    m.direction(_conflicting(2, 5, 1), torch.ones(2, dtype=F64))  # step 0 works
    g = _conflicting(1, 5, 2)[0]
    with pytest.raises(RuntimeError, match=r"nash_mtl: no bargaining solution at step 1: Newton stopped"):
        m.direction(torch.stack([g, -g]), torch.ones(2, dtype=F64))


def _ccp_reference(j: torch.Tensor) -> np.ndarray | None:
    """The current solution of the paper's code (torchjd's public ``NashMTL`` aggregator: its sequence of
    cvxpy/ECOS convex problems, 20 at most), weights recovered from its direction by least squares
    (``J`` has full row rank); None where that sequence did not reach ``|G a - 1/a| < 1e-3`` (torchjd
    then keeps EW's or a stale iterate)."""
    from torchjd.aggregation import NashMTL

    d = NashMTL(n_tasks=j.shape[0], max_norm=0.0)(j.float()).double()
    a = torch.linalg.lstsq(j.T, d).solution.numpy()
    g = (j @ j.T).numpy()
    scale = np.linalg.norm(g)
    unit = a * np.sqrt(scale)
    if not np.all(unit > 0) or np.linalg.norm(g / scale @ unit - 1 / unit) > 2e-3:
        return None
    return a


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem that is not DPP")
def test_nash_mtl_newton_solver_matches_the_papers_convex_sequence() -> None:
    """litmus's Newton solve against the paper's sequential convex problems (cvxpy/ECOS through torchjd's
    public aggregator) on random problems of 2-7 tasks, several gradient scales and conflicts."""
    from trainables.weighting.nash_mtl import bargaining_weights

    rng = np.random.default_rng(0)
    compared = 0
    for k in range(30):  # each reference solve compiles up to 20 cvxpy problems (~0.4 s)
        t = int(rng.integers(2, 8))
        j = rng.standard_normal((t, 30)) + rng.uniform(0, 1) * rng.standard_normal((1, 30))
        j = torch.from_numpy(j * rng.uniform(0.05, 5.0, size=(t, 1)))
        want = _ccp_reference(j)
        g = (j @ j.T).numpy()
        scale = np.linalg.norm(g)
        unit, _ = bargaining_weights(g / scale)
        got = unit / np.sqrt(scale)
        assert np.linalg.norm(g @ got - 1 / got) <= 1e-8 * np.linalg.norm(1 / got)  # the bargaining condition
        if want is None:
            continue
        compared += 1
        cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cos >= 0.9999, (k, got, want)
        assert np.allclose(got, want, rtol=2e-3), (k, got, want)
    assert compared >= 25  # the convex sequence converged on most of them


def test_nash_mtl_newton_solver_on_many_problems() -> None:
    """The bargaining condition to 1e-8 on 200 random problems (2-40 tasks, conditioning up to ~1e6)."""
    from trainables.weighting.nash_mtl import bargaining_weights

    rng = np.random.default_rng(1)
    for _ in range(200):
        t = int(rng.integers(2, 41))
        j = rng.standard_normal((t, int(rng.integers(t, 3 * t + 2)))) + rng.uniform(0, 2) * rng.standard_normal((1, 1))
        j *= 10.0 ** rng.uniform(-1.5, 1.5, size=(t, 1))
        g = j @ j.T
        scale = np.linalg.norm(g)
        a, iterations = bargaining_weights(g / scale)
        assert np.all(a > 0) and iterations <= 60
        assert np.linalg.norm(g / scale @ a - 1 / a) <= 1e-8 * np.linalg.norm(1 / a)


def test_nash_mtl_warm_start_takes_few_newton_iterations() -> None:
    m = registry.build("nash_mtl", 4, max_norm=0.0)
    j = _conflicting(4, 20, 3)
    m.direction(j, torch.ones(4, dtype=F64))
    first = m.iterations
    m.direction(j * 1.01 + 0.01 * _conflicting(4, 20, 4), torch.ones(4, dtype=F64))
    assert m.iterations < first and m.iterations <= 5


# --- GradNorm ----------------------------------------------------------------------------------


def test_gradnorm_moves_norms_toward_targets() -> None:
    j = torch.tensor([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 2.0]], dtype=F64)
    norms = j.norm(dim=1)
    m = registry.build("gradnorm", 3, alpha=1.5, lr=0.02)
    l0 = torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    m.direction(j, l0)  # the first call sets L(0)
    losses = torch.tensor([0.9, 0.5, 0.7], dtype=F64)  # task 0 trains slowest -> largest target
    ratio = losses / l0
    r = ratio / ratio.mean()

    def error() -> float:
        w = m.task_weights.detach().double()
        gw = w * norms
        return float((gw - gw.mean() * r**1.5).abs().sum())

    errors = [error()]
    for _ in range(150):
        m.direction(j, losses)
        errors.append(error())
        assert float(m.task_weights.sum()) == pytest.approx(3.0)
        assert (m.task_weights > 0).all()
    assert errors[-1] < 0.1 * errors[0]
    w = m.task_weights.detach().double()
    assert int((w * norms).argmax()) == 0 and w[0] > w[2] > w[1]
    assert m.optimizer_params() == []  # own optimiser


# --- RGW ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet", "bernoulli", "c-bernoulli"])
def test_rgw_expected_direction_is_ew(distribution: str) -> None:
    j = _conflicting(3, 4, 0)
    m = registry.build("rgw", 3, generator=torch.Generator().manual_seed(0), distribution=distribution)
    n = 4000
    total = torch.zeros(4, dtype=F64)
    weights = torch.zeros(3, dtype=F64)
    for _ in range(n):
        total += m.direction(j, torch.ones(3, dtype=F64))
        weights += m.last_weights
    torch.testing.assert_close(weights / n, torch.ones(3, dtype=F64), rtol=0, atol=0.06)
    torch.testing.assert_close(total / n, j.sum(0), rtol=0, atol=0.06 * float(j.abs().sum(0).max()))


# --- GradDrop ----------------------------------------------------------------------------------


def test_graddrop_masks_by_sign_purity() -> None:
    # feature 0: all tasks agree (kept whole); feature 1: tasks 0,1 push +, task 2 pushes - (batch sums)
    j = torch.tensor([[[1.0, 2.0]], [[2.0, 1.0]], [[0.5, -3.0]]], dtype=F64)  # [T=3, batch=1, 2]
    m = registry.build("graddrop", 3, generator=torch.Generator().manual_seed(0))
    kept_positive = 0
    for _ in range(400):
        d = m.direction(j, torch.ones(3, dtype=F64))
        assert d[0, 0] == pytest.approx(3.5)
        assert float(d[0, 1]) in (pytest.approx(3.0), pytest.approx(-3.0))
        kept_positive += float(d[0, 1]) > 0
    # P = (1 + 0/6) / 2 = 0.5 for feature 1: each sign kept half the time
    assert 150 < kept_positive < 250


def test_graddrop_uses_the_activation_sign() -> None:
    """Chen et al., Algorithm 1: G_t = sum_batch sign(A) * J_t. Raw batch sums that disagree
    (-2 vs +3: P = 0.6, random drops) agree once sample 1's negative activation flips its
    gradients (+4 vs +1: P = 1, nothing dropped): every draw keeps both tasks whole."""
    j = torch.tensor([[[1.0], [-3.0]], [[2.0], [1.0]]], dtype=F64)  # [T=2, batch=2, 1]
    losses = torch.ones(2, dtype=F64)
    m = registry.build("graddrop", 2, generator=torch.Generator().manual_seed(0))
    raw = [m.direction(j, losses) for _ in range(60)]
    assert any(not torch.allclose(d, j.sum(0)) for d in raw), "without the activation some draws drop a task"
    m.activation = torch.tensor([[0.7], [-0.2]], dtype=F64)
    for _ in range(60):
        torch.testing.assert_close(m.direction(j, losses), j.sum(0))
    # and the other way round: gradients that agree in raw sums disagree after the sign flip
    j2 = torch.tensor([[[1.0], [3.0]], [[2.0], [1.0]]], dtype=F64)  # raw sums +4, +3: nothing dropped
    m.activation = None
    for _ in range(20):
        torch.testing.assert_close(m.direction(j2, losses), j2.sum(0))
    m.activation = torch.tensor([[1.0], [-1.0]], dtype=F64)  # signed sums -2, +1: P = (1 - 1/3) / 2 = 1/3
    kept_task1 = 0
    for _ in range(600):
        d = m.direction(j2, losses)
        kept_task1 += bool(torch.allclose(d, j2[1]))  # task 1 (positive) kept alone when P > U
    assert 150 < kept_task1 < 250  # P(U < 1/3) = 1/3 of 600


def test_trainer_gives_graddrop_the_representation() -> None:
    """The trainer sets GradDrop's activation to the batch's representation before each direction."""
    from trainables.config import TrainConfig
    from trainables.trainer import Trainer

    tr = Trainer(TrainConfig(dataset="multi_digits", method="graddrop", space="rep", epochs=1, batch_size=16,
                             max_steps_per_epoch=2, dataset_options={"n_train": 64, "n_val": 16, "n_test": 16,
                                                                     "width": 8}))
    seen = []
    real = tr.grad_method.direction

    def spy(jac, losses):
        seen.append((tr.grad_method.activation, jac.shape))
        return real(jac, losses)

    tr.grad_method.direction = spy
    list(tr.epochs())
    assert len(seen) == 2
    for act, shape in seen:
        assert act is not None and tuple(act.shape) == tuple(shape[1:])  # [batch, features] of the Jacobian
        assert not act.requires_grad and bool((act != 1).any())


def test_graddrop_uses_the_batch_sum() -> None:
    # per-sample gradients of opposite signs whose batch sums agree: nothing is dropped
    j = torch.tensor([[[1.0], [-0.5]], [[2.0], [-0.5]]], dtype=F64)  # [T=2, batch=2, 1]
    m = registry.build("graddrop", 2)
    for _ in range(20):
        torch.testing.assert_close(m.direction(j, torch.ones(2, dtype=F64)), j.sum(0))


# --- GradVac, DB-MTL, Aligned-MTL, UPGrad, FairGrad --------------------------------------------


def test_gradvac_first_step_is_pcgrad_for_two_tasks_and_keeps_state() -> None:
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=F64)
    m = registry.build("gradvac", 2, beta=0.5)
    d = m.direction(j, torch.ones(2, dtype=F64))  # targets start at 0: raise cosines to 0 = PCGrad
    torch.testing.assert_close(d, torch.tensor([0.5, 1.5], dtype=F64))
    # after one step the targets are the EMA of the cosines (negative here): less correction
    d2 = m.direction(j, torch.ones(2, dtype=F64))
    assert not torch.allclose(d2, d)


def test_db_mtl_scales_ema_gradients_to_the_largest_norm() -> None:
    j = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=F64)
    losses = torch.tensor([2.0, 0.5], dtype=F64)
    m = registry.build("db_mtl", 2, beta=0.9)
    d = m.direction(j, losses)
    # log-loss gradients: [1.5, 0], [0, 2]; EMA from 0: times 0.1; both scaled to norm 0.2
    torch.testing.assert_close(d, torch.tensor([0.2, 0.2], dtype=F64), rtol=1e-6, atol=1e-9)
    d2 = m.direction(j, losses)  # EMA: 0.19 of each
    torch.testing.assert_close(d2, torch.tensor([0.38, 0.38], dtype=F64), rtol=1e-6, atol=1e-9)
    assert m.last_weights is None
    with pytest.raises(RuntimeError, match="positive losses"):
        m.direction(j, torch.tensor([1.0, -1.0], dtype=F64))


def test_aligned_mtl_equalises_singular_values() -> None:
    j = _conflicting(3, 6, 2)
    m = registry.build("aligned_mtl", 3)
    m.direction(j, torch.ones(3, dtype=F64))
    g = j @ j.T
    lam, v = torch.linalg.eigh(g)
    b = lam.min().sqrt() * v @ torch.diag(lam.rsqrt()) @ v.T
    torch.testing.assert_close(m.last_weights, b.sum(1))  # official code: sum of the aligned gradients
    sv = torch.linalg.svdvals(j.T @ b)
    torch.testing.assert_close(sv, sv.min().expand(3))


def test_upgrad_conflicts_with_no_task() -> None:
    for seed in range(5):
        j = _conflicting(4, 6, seed)
        d = registry.build("upgrad", 4).direction(j, torch.ones(4, dtype=F64))
        assert (j @ d >= -1e-6 * float(d.norm())).all()


def test_fairgrad_condition() -> None:
    j = _conflicting(3, 8, 4)
    for alpha in (0.5, 1.0, 2.0):
        m = registry.build("fairgrad", 3, alpha=alpha)
        m.direction(j, torch.ones(3, dtype=F64))
        w = m.last_weights
        residual = (j @ j.T @ w - w.pow(-1 / alpha)).norm() / w.pow(-1 / alpha).norm()
        assert residual < 1e-4


def test_fairgrad_newton_agrees_with_least_squares_and_solves_where_it_does_not() -> None:
    """fair_weights (damped Newton) against torchjd's scipy least_squares (the official solver): the same
    direction wherever least_squares converged; where it stopped short (tiny Gramians: huge weights) Newton
    still satisfies the condition G w = w^(-1/alpha); it gives up (the step then takes least_squares's answer)
    only on the rare nearly unsolvable problem."""
    from torchjd.aggregation import FairGradWeighting

    from trainables.weighting.fairgrad import fair_weights

    rng = np.random.default_rng(3)
    agreed = short = gave_up = 0
    for k in range(120):
        t, alpha = (2, 3, 5)[k % 3], (0.25, 0.5, 1.0, 2.0, 4.0)[k % 5]
        j = rng.standard_normal((t, 30)) * rng.uniform(0.01, 10, size=(t, 1)) * 10.0 ** rng.uniform(-4, 3)
        if k % 2 == 0:
            j = j + 3 * rng.standard_normal(30)  # a common component
        if k % 7 == 0:
            j[1] = -rng.uniform(0.1, 2) * j[0] + 0.05 * j[1]  # strongly conflicting
        g = j @ j.T
        w = fair_weights(g, alpha)
        ref = FairGradWeighting(alpha)(torch.from_numpy(g)).numpy()
        if w is None:  # no solution reached (nearly zero non-negative combination): the step falls back to ref
            gave_up += 1
            continue
        assert (w > 0).all()
        target = w ** (-1 / alpha)
        assert np.linalg.norm(g @ w - target) <= 1e-6 * np.linalg.norm(target)
        ref_target = ref ** (-1 / alpha)
        if np.linalg.norm(g @ ref - ref_target) <= 1e-6 * np.linalg.norm(ref_target):
            d, dr = w @ j, ref @ j
            assert d @ dr / np.linalg.norm(d) / np.linalg.norm(dr) >= 0.9999
            agreed += 1
        else:
            short += 1
    assert agreed >= 90 and short >= 1 and gave_up <= 3  # both kinds of problem were met; the fallback is rare


def test_fairgrad_falls_back_to_least_squares_without_a_positive_solution() -> None:
    """A task with a zero gradient: G w = w^(-1/alpha) has no positive solution; Newton gives up and the
    step takes torchjd's least_squares answer, as before."""
    from torchjd.aggregation import FairGradWeighting

    from trainables.weighting.fairgrad import fair_weights

    j = np.random.default_rng(0).standard_normal((3, 10))
    j[2] = 0.0
    g = j @ j.T
    assert fair_weights(g, 1.0) is None
    m = registry.build("fairgrad", 3)
    m.direction(torch.from_numpy(j), torch.ones(3, dtype=F64))
    torch.testing.assert_close(m.last_weights, FairGradWeighting(1.0)(torch.from_numpy(g)))


def test_mgda_closed_form_for_two_tasks_matches_the_qp() -> None:
    """T = 2 in closed form against quadprog's exact QP (the solver for T > 2) and an independent SLSQP solve."""
    import quadprog

    from trainables.weighting.mgda import min_norm_simplex

    rng = np.random.default_rng(1)
    for k in range(200):
        j = rng.standard_normal((2, 12)) * rng.uniform(0.01, 10.0, size=(2, 1))
        if k % 4 == 0:
            j[1] = -rng.uniform(0.1, 3.0) * j[0] + 0.05 * j[1]  # strongly conflicting
        if k % 4 == 1:
            j[1] = rng.uniform(0.1, 3.0) * j[0] + 0.01 * j[1]  # nearly aligned: a vertex
        g = j @ j.T
        got = min_norm_simplex(g)
        p = g / np.trace(g) + 1e-9 * np.eye(2)
        qp = quadprog.solve_qp(p, np.zeros(2), np.concatenate([np.ones((2, 1)), np.eye(2)], axis=1),
                               np.array([1.0, 0.0, 0.0]), 1)[0]
        for want in (qp, _qp_min_norm(g / np.trace(g))):
            cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
            assert cos >= 0.9999, (k, got, want)
        assert got @ g @ got <= qp @ g @ qp * (1 + 1e-9) + 1e-15


def test_min_norm_solver_handles_linearly_dependent_and_zero_gradients() -> None:
    """Parallel or zero task gradients make the Gramian singular: the solve must still succeed."""
    import numpy as np

    from trainables.weighting.mgda import min_norm_simplex

    g = np.array([[1.0, 2.0], [3.0, 6.0], [-0.5, -1.0]])
    alpha = min_norm_simplex(g @ g.T)
    assert alpha.min() >= 0 and abs(alpha.sum() - 1) < 1e-9
    assert np.linalg.norm(alpha @ g) < 1e-6  # the hull contains 0 (opposite directions)
    assert np.allclose(min_norm_simplex(np.zeros((3, 3))), 1 / 3)
    j = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])
    d = registry.build("mgda", 2, normalization="none").direction(j, torch.ones(2))
    assert torch.allclose(d, 2 * j[0], atol=1e-5)  # min-norm point of the segment is the shorter one, x T


def test_nash_mtl_solves_small_gradient_scales() -> None:
    """Representation-space Gramians have tiny norms (~1e-5): the bargaining condition must still hold."""
    j = _conflicting(3, 6, 4) * 1e-3
    m = registry.build("nash_mtl", 3, max_norm=0.0)
    m.direction(j, torch.ones(3, dtype=F64))
    w = m.last_weights.double()
    g = j @ j.T
    torch.testing.assert_close(g @ w, 1 / w, rtol=1e-8, atol=0.0)


@pytest.mark.parametrize("t", [2, 3, 5, 12, 40])
def test_cagrad_small_dual_solver_matches_torchjds_cvxpy_solution(t: int) -> None:
    """litmus's CAGrad dual (closed form for T = 2, a root search over exact QPs otherwise) against
    torchjd's cvxpy/CLARABEL weights."""
    from torchjd.aggregation import CAGradWeighting

    from trainables.weighting.cagrad import cagrad_dual

    gen = torch.Generator().manual_seed(t)
    for k in range(16 if t <= 5 else 6):  # each k: 3 cvxpy solves (~10 ms each)
        j = torch.randn(t, 30 + t, generator=gen, dtype=torch.float64)
        if k % 4 == 0:
            j[1] = -0.7 * j[0] + 0.1 * j[1]  # strongly conflicting pair
        if k % 4 == 1:
            j[1] = 2.0 * j[0]  # aligned pair (w may sit on a vertex)
        g = j @ j.T
        for c in (0.2, 0.4, 0.8):
            want = CAGradWeighting(c=c)(g).numpy()
            got = cagrad_dual((g / g.trace()).numpy(), c)
            cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
            assert cos >= 0.9999, (k, c, got, want)
            assert np.allclose(got, want, rtol=1e-3, atol=1e-4), (k, c, got, want)
