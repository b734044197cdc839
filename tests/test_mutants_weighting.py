"""The weighting methods whose silent bug changes a conclusion (EW, RLW, RGW, UW, PCGrad, CAGrad, MGDA) and
their shared contract code, against values written out by hand (mutation testing, docs/testing.md):
hyperparameter validation and its messages, the capability checks, the direction plumbing (step counter,
error wrapping, recorded weights), seeded randomness that leaves the global RNG alone, and each method's
weights on small cases solved by hand."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from litmus.errors import ConfigError, MethodError
from trainables.weighting import registry
from trainables.weighting._grad import (WeightedGradientMethod, check_inputs, combine, draw_seed, gramian,
                                        make_generator, seeded_global_rng)
from trainables.weighting.base import GradientMethod, HParam, LossWeighting, as_list, check_hparams
from trainables.weighting.cagrad import _dual_two, cagrad_dual
from trainables.weighting.mgda import min_norm_simplex, normalizers
from trainables.weighting.sampling import DISTRIBUTIONS, check_distribution, sample

F64 = torch.float64


# --- base: hyperparameters ----------------------------------------------------------------------------------
def test_hparam_validate_each_kind() -> None:
    f = HParam("c", 0.4, low=0.1, high=1.0)
    assert f.validate(1, "m") == 1.0 and isinstance(f.validate(1, "m"), float)
    for bad, msg in ((True, "m.c must be a number, got True"), ("x", "m.c must be a number, got 'x'"),
                     (float("inf"), "m.c must be finite, got inf"), (float("nan"), "m.c must be finite")):
        with pytest.raises(ConfigError, match=msg):
            f.validate(bad, "m")
    i = HParam("k", 2, kind="int")
    assert i.validate(3.0, "m") == 3 and isinstance(i.validate(3.0, "m"), int)
    with pytest.raises(ConfigError, match=r"m.k must be an integer, got 2.5"):
        i.validate(2.5, "m")
    c = HParam("d", "a", kind="categorical", choices=("a", "b"))
    assert c.validate("b", "m") == "b"
    with pytest.raises(ConfigError, match=r"m.d must be one of \['a', 'b'\], got 'z'"):
        c.validate("z", "m")
    assert HParam("any", "a", kind="categorical").validate(object, "m") is object
    b = HParam("flag", False, kind="bool")
    assert b.validate(True, "m") is True
    with pytest.raises(ConfigError, match="m.flag must be true or false, got 1"):
        b.validate(1, "m")


def test_hparam_search_space() -> None:
    assert HParam("c", 0.4, low=0.1, high=1.0, log=True).search_space() == {"type": "float", "low": 0.1,
                                                                            "high": 1.0, "log": True}
    assert HParam("k", 2, kind="int", low=1, high=5).search_space() == {"type": "int", "low": 1, "high": 5,
                                                                       "log": False}
    assert HParam("d", "a", kind="categorical", choices=("a", "b")).search_space() == {"type": "categorical",
                                                                                      "choices": ["a", "b"]}
    assert HParam("f", False, kind="bool").search_space() == {"type": "categorical", "choices": [False, True]}


def test_check_hparams_fills_defaults_and_names_unknown_ones() -> None:
    uw = registry.get("uw")
    assert check_hparams(uw, {}) == {"lr": 0.025}
    assert check_hparams(uw, {"lr": 1}) == {"lr": 1.0}
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) a, b for method 'uw'; valid: lr"):
        check_hparams(uw, {"b": 1, "a": 2})
    with pytest.raises(ConfigError, match="valid: none"):
        check_hparams(registry.get("ew"), {"a": 1})


def test_method_declarations_and_checks() -> None:
    with pytest.raises(ConfigError, match="num_tasks must be >= 1, got 0"):
        registry.get("ew")(0)
    assert registry.get("ew")(1).num_tasks == 1
    from trainables import architectures as archs

    hps, mtan = archs.get("hps"), archs.get("mtan")
    stl = registry.get("stl")
    stl.check(hps, None)
    with pytest.raises(ConfigError, match="method 'stl' trains one hps-style model per task; use arch hps or stl, "
                                          "not 'mtan'"):
        stl.check(mtan, None)
    meta = next(registry.get(n) for n in registry.names("loss") if registry.get(n).needs_meta)
    meta.check(hps, None, multi_input=False)
    with pytest.raises(ConfigError, match="needs a meta split of one training set"):
        meta.check(hps, None, multi_input=True)
    pc = registry.get("pcgrad")
    pc.check(hps, "rep")
    pc.check(mtan, "param")
    with pytest.raises(ConfigError, match="method 'mgda' cannot work in 'rep' space; it supports: param"):
        registry.get("mgda").check(hps, "rep")
    with pytest.raises(ConfigError, match="'pcgrad' in rep space needs a single shared representation; "
                                          "architecture 'mtan' has none"):
        pc.check(mtan, "rep")
    with pytest.raises(ConfigError, match="rep space is not supported on a multi-input dataset"):
        pc.check(hps, "rep", multi_input=True)
    pc.check(hps, "param", multi_input=True)

    class Rotating(GradientMethod):
        name = "rotating"
        transforms_rep = True

    Rotating.check(hps, "param")
    with pytest.raises(ConfigError, match="'rotating' transforms the shared representation; architecture 'mtan' "
                                          "has none"):
        Rotating.check(mtan, "param")


def test_base_hooks_and_helpers() -> None:
    uw = registry.build("uw", 3, lr=0.05)
    assert uw.optimizer_params() == [uw.log_var] and uw.lr == 0.05
    assert uw.extra_repr() == "lr=0.05"
    ew = registry.build("ew", 2)
    assert ew.regularizer() is None and ew.optimizer_params() == [] and ew.lr is None
    assert as_list(torch.tensor([1.5, 2.0])) == [1.5, 2.0] and as_list((1, 2)) == [1.0, 2.0]
    assert LossWeighting.unit_weight == 1.0 and GradientMethod.default_space == "param"
    g = registry.build("pcgrad", 2, seed=0)
    rep = torch.ones(3)
    assert g.transform_rep(rep, 1) is rep


# --- _grad: the direction contract ------------------------------------------------------------------------
def test_check_inputs_messages() -> None:
    j, l2 = torch.zeros(2, 3), torch.zeros(2)
    check_inputs("m", 2, j, l2)
    check_inputs("m", 2, torch.zeros(2, 3, 4), l2)
    with pytest.raises(MethodError, match=r"m: jacobian must be \[T, \.\.\.\] with at least 2 dims, got shape \(3,\)"):
        check_inputs("m", 2, torch.zeros(3), l2)
    with pytest.raises(MethodError, match="m: jacobian has 3 rows for 2 tasks"):
        check_inputs("m", 2, torch.zeros(3, 3), l2)
    with pytest.raises(MethodError, match=r"m: losses must have shape \(2,\), got \(3,\)"):
        check_inputs("m", 2, j, torch.zeros(3))


def test_combine_and_gramian() -> None:
    j = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]], dtype=F64)  # [T=2, 1, 2]
    w = torch.tensor([2.0, 0.5], dtype=torch.float32)
    out = combine(w, j)
    assert out.dtype == F64 and out.shape == (1, 2) and out.tolist() == [[3.5, 3.5]]
    assert gramian(j).tolist() == [[5.0, 1.0], [1.0, 10.0]]


class _Fixed(WeightedGradientMethod):
    name = "fixed_test"

    def __init__(self, w, exc=None):
        super().__init__(len(w))
        self.w, self.exc = torch.tensor(w, dtype=F64), exc

    def weights(self, jacobian, losses):
        assert not jacobian.requires_grad and not losses.requires_grad
        if self.exc is not None:
            raise self.exc
        return self.w


def test_weighted_direction_counts_steps_records_weights_and_wraps_errors() -> None:
    m = _Fixed([2.0, -1.0])
    j = torch.tensor([[1.0, 1.0], [0.0, 3.0]], requires_grad=True)
    d = m.direction(j, torch.tensor([1.0, 2.0], requires_grad=True))
    assert d.tolist() == [2.0, -1.0] and d.dtype == torch.float32 and not d.requires_grad
    assert m.last_weights.dtype == torch.float32 and m.last_weights.tolist() == [2.0, -1.0]
    assert m.steps == 1
    bad = _Fixed([1.0, 1.0], exc=ValueError("singular"))
    bad.steps = 4
    with pytest.raises(RuntimeError, match=r"fixed_test: solver failed at step 4: ValueError: singular") as e:
        bad.direction(j, torch.ones(2))
    assert isinstance(e.value.__cause__, ValueError) and bad.steps == 5
    own = _Fixed([1.0, 1.0], exc=RuntimeError("own message"))
    with pytest.raises(RuntimeError, match="^own message$"):
        own.direction(j, torch.ones(2))
    with pytest.raises(MethodError):
        m.direction(j[:1], torch.ones(2))
    assert m.steps == 1  # a refused input is not a step


def test_seeded_global_rng_is_reproducible_and_restores_the_global_rng() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with seeded_global_rng(g1):
        a = torch.rand(4)
    with seeded_global_rng(g2):
        b = torch.rand(4)
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(3), expected_next)  # the global stream continues as if untouched
    with seeded_global_rng(g1):
        c = torch.rand(4)
    assert not torch.equal(a, c)  # the method's generator moved on
    s = draw_seed(torch.Generator().manual_seed(5))
    assert 0 <= s < 2**62 and s == draw_seed(torch.Generator().manual_seed(5))
    given = torch.Generator()
    assert make_generator(given, 3) is given
    assert torch.equal(torch.rand(2, generator=make_generator(None, 3)),
                       torch.rand(2, generator=torch.Generator().manual_seed(3)))


# --- sampling, EW, RLW, RGW, UW -------------------------------------------------------------------------------
def test_sample_scales_simplex_weights_by_t() -> None:
    for name in DISTRIBUTIONS:
        w = sample(name, 4, torch.Generator().manual_seed(1))
        assert w.shape == (4,) and float(w.sum()) == pytest.approx(4.0, rel=1e-6) and bool((w >= 0).all())
    g = torch.Generator().manual_seed(2)
    want = torch.softmax(torch.randn(3, generator=torch.Generator().manual_seed(2)), 0) * 3
    assert torch.allclose(sample("normal", 3, g), want)
    want_u = torch.softmax(torch.rand(3, generator=torch.Generator().manual_seed(2)), 0) * 3
    assert torch.allclose(sample("uniform", 3, torch.Generator().manual_seed(2)), want_u)
    cb = sample("c-bernoulli", 5, torch.Generator().manual_seed(0))
    assert sorted(cb.tolist()) == [0.0] * 4 + [5.0]
    with pytest.raises(ConfigError, match="unknown distribution 'beta'; valid: normal, uniform, dirichlet, "
                                          "bernoulli, c-bernoulli"):
        check_distribution("beta")
    assert check_distribution("dirichlet") == "dirichlet"


def test_dirichlet_and_bernoulli_by_hand() -> None:
    u = torch.rand(3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    e = -torch.log1p(-u)
    assert torch.allclose(sample("dirichlet", 3, torch.Generator().manual_seed(4)), (3 * e / e.sum()).float())
    r = torch.rand(6, generator=torch.Generator().manual_seed(9))
    b = (r < 0.5).float()
    assert b.sum() > 0
    assert torch.allclose(sample("bernoulli", 6, torch.Generator().manual_seed(9)), 6 * b / b.sum())
    # all-zero draws are redrawn: with one task the first draw >= 0.5 wins
    g = torch.Generator().manual_seed(0)
    draws = [float(torch.rand(1, generator=g)) for _ in range(10)]
    first = next(k for k, v in enumerate(draws) if v < 0.5)
    g2 = torch.Generator().manual_seed(0)
    assert sample("bernoulli", 1, g2).tolist() == [1.0]
    assert torch.equal(torch.rand(1, generator=g2), torch.tensor([draws[first + 1]]))


def test_ew_rlw_rgw_weights() -> None:
    losses = torch.tensor([3.0, 0.5, 2.0], dtype=F64)
    ew = registry.build("ew", 3)
    assert ew.weights(losses).tolist() == [1.0, 1.0, 1.0] and ew.weights(losses).dtype == F64
    rlw = registry.build("rlw", 3, distribution="uniform", seed=7)
    w = rlw.weights(losses)
    assert w.dtype == F64 and torch.allclose(w, sample("uniform", 3, torch.Generator().manual_seed(7)).double())
    assert not torch.equal(w, rlw.weights(losses))  # fresh weights each step
    gen = torch.Generator().manual_seed(11)
    rlw_g = registry.get("rlw")(3, generator=gen, distribution="normal", seed=0)
    assert rlw_g.generator is gen
    rgw = registry.build("rgw", 3, distribution="normal", seed=7)
    j = torch.eye(3, dtype=F64)
    d = rgw.direction(j, losses)
    assert torch.allclose(d, sample("normal", 3, torch.Generator().manual_seed(7)).double())
    assert rgw.last_weights.tolist() == pytest.approx(d.tolist())
    assert registry.get("rgw").default_space == "rep"


def test_uw_weights_and_regulariser() -> None:
    uw = registry.build("uw", 2, lr=0.01)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))
    assert uw.weights(torch.ones(2, dtype=F64)).tolist() == pytest.approx([0.5, 0.125])
    assert uw.weights(torch.ones(2, dtype=F64)).dtype == F64
    assert uw.regularizer().item() == pytest.approx(0.5 * math.log(4.0))
    assert uw.unit_weight == 0.5 and uw.lr == 0.01
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match=f"uw.lr must be > 0, got {bad}"):
            registry.get("uw")(2, lr=bad)


# --- PCGrad, CAGrad, MGDA ---------------------------------------------------------------------------------------
def test_pcgrad_two_conflicting_tasks_by_hand() -> None:
    g1, g2 = torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([-1.0, 1.0], dtype=F64)
    pc = registry.build("pcgrad", 2, seed=0)
    d = pc.direction(torch.stack([g1, g2]), torch.ones(2, dtype=F64))
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2  # [0.5, 0.5]
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1  # [0, 1]
    assert d.tolist() == pytest.approx((p1 + p2).tolist())
    # no conflict: the plain sum, weights 1
    d2 = pc.direction(torch.stack([g1, torch.tensor([1.0, 1.0], dtype=F64)]), torch.ones(2, dtype=F64))
    assert d2.tolist() == pytest.approx([2.0, 1.0]) and pc.last_weights.tolist() == pytest.approx([1.0, 1.0])
    assert pc.steps == 2


def test_pcgrad_order_comes_from_its_own_seed() -> None:
    j = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.2, -1.0, 1.0]], dtype=F64)
    dirs = {s: registry.build("pcgrad", 3, seed=s).direction(j, torch.ones(3, dtype=F64)) for s in range(8)}
    assert len({tuple(np.round(d.numpy(), 9)) for d in dirs.values()}) > 1  # the order matters, and varies
    a = registry.build("pcgrad", 3, seed=3)
    b = registry.build("pcgrad", 3, seed=3)
    torch.manual_seed(0)
    da = [a.direction(j, torch.ones(3, dtype=F64)) for _ in range(3)]
    torch.manual_seed(99)  # the global RNG does not matter
    db = [b.direction(j, torch.ones(3, dtype=F64)) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(da, db))


def _cagrad_brute(g: np.ndarray, c: float) -> np.ndarray:
    """The dual on a fine grid of the 2-task simplex: w = (a, 1 - a)."""
    t = 2
    b = g @ np.full(t, 1 / t)
    s = c * math.sqrt(np.full(t, 1 / t) @ b)
    a = np.linspace(0, 1, 200001)
    w = np.stack([a, 1 - a], 1)
    f = w @ b + s * np.sqrt(np.maximum(np.einsum("ki,ij,kj->k", w, g, w), 0))
    return w[np.argmin(f)]


@pytest.mark.parametrize("g,c", [([[1.0, -0.3], [-0.3, 0.5]], 0.4), ([[2.0, 0.1], [0.1, 0.2]], 0.8),
                                 ([[1.0, 0.9], [0.9, 1.0]], 0.2), ([[1.0, -0.9], [-0.9, 1.0]], 0.5)])
def test_cagrad_two_task_closed_form_matches_a_grid(g, c) -> None:
    g = np.array(g) / np.trace(g)
    b = g @ np.full(2, 0.5)
    s = c * math.sqrt(0.5 * b.sum())
    w = _dual_two(b, g, s)
    assert w == pytest.approx(_cagrad_brute(g, c), abs=2e-5)
    norm = math.sqrt(w @ g @ w)
    assert cagrad_dual(g, c) == pytest.approx(0.5 + s / norm * w, abs=1e-4)


def test_cagrad_scale_rescale_and_errors() -> None:
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64) * 3.0  # orthogonal, equal norms: w = (1/2, 1/2)
    for rescale, div in ((0, 1.0), (1, 1 + 0.5 ** 2), (2, 1.5)):
        m = registry.build("cagrad", 2, c=0.5, rescale=rescale)
        d = m.direction(g, torch.ones(2, dtype=F64))
        # g0 = mean = (1.5, 1.5), |g0| = 3/sqrt(2), g_w = g0: d = g0 (1 + c); times T, divided by the rescale
        assert d.tolist() == pytest.approx([2 * 1.5 * 1.5 / div] * 2)
        assert m.last_weights.tolist() == pytest.approx([2 * 0.5 * 1.5 / div] * 2)
    assert cagrad_dual(np.array([[1.0]]), 0.4) == pytest.approx([1.0 + 0.4])
    assert cagrad_dual(np.zeros((2, 2)), 0.4).tolist() == [0.0, 0.0]  # |g_w| below 1e-4: zero weights
    with pytest.raises(ConfigError, match="cagrad.c must be >= 0, got -0.1"):
        registry.get("cagrad")(2, c=-0.1)
    with pytest.raises(ConfigError, match=r"cagrad.rescale must be one of \[0, 1, 2\], got 3"):
        registry.get("cagrad")(2, rescale=3)
    # a Gramian of trace below 1e-4 is not normalised, so |g_w| (2e-5) is below 1e-4: zero weights (normalised,
    # |g_w| would be 0.7)
    tiny = torch.tensor([[3e-5, 0.0], [0.0, 3e-5]], dtype=F64)
    m = registry.build("cagrad", 2, c=0.5, rescale=0)
    assert m.direction(tiny, torch.ones(2, dtype=F64)).tolist() == [0.0, 0.0]
    small = torch.tensor([[1e-3, 0.0], [0.0, 1e-3]], dtype=F64)  # trace 2e-6: not normalised, |g_w| 7e-4
    assert m.direction(small, torch.ones(2, dtype=F64)).tolist() == pytest.approx([2 * 0.75 * 1e-3] * 2)


def test_cagrad_three_tasks_solver() -> None:
    rng = np.random.default_rng(0)
    j = rng.normal(size=(3, 5)) + 0.5
    g = j @ j.T
    g = g / np.trace(g)
    c = 0.4
    w = cagrad_dual(g, c)
    ones = np.full(3, 1 / 3)
    s = c * math.sqrt(ones @ g @ ones)
    # d = sum_t w_t g_t: the worst task improvement min_t g_t . d is the maximum over the ball |d - g0| <= s
    d = w @ j / math.sqrt(np.trace(j @ j.T))
    g0 = ones @ j / math.sqrt(np.trace(j @ j.T))
    assert np.linalg.norm(d - g0) == pytest.approx(s, rel=1e-4)
    jn = j / math.sqrt(np.trace(j @ j.T))
    best = min(jn @ d)
    for k in range(300):
        u = rng.normal(size=5)
        e = g0 + s * u / np.linalg.norm(u)
        assert min(jn @ e) <= best + 1e-6


def test_mgda_normalizers_by_hand() -> None:
    sq, losses = np.array([4.0, 0.0]), np.array([2.0, 0.5])
    assert normalizers("none", sq, losses, "m").tolist() == [1.0, 1.0]
    assert normalizers("l2", sq, losses, "m").tolist() == [2.0, 1e-12]
    assert normalizers("loss", sq, losses, "m").tolist() == [2.0, 0.5]
    assert normalizers("loss+", sq, losses, "m").tolist() == [4.0, 1e-12]
    assert normalizers("l2", np.array([-1e-20, 9.0]), losses, "m").tolist() == [1e-12, 3.0]
    for kind in ("loss", "loss+"):
        with pytest.raises(MethodError, match=re.escape(f"m: normalization '{kind}' needs positive losses, got [2.0, 0.0]")):
            normalizers(kind, sq, np.array([2.0, 0.0]), "m")
    assert normalizers("l2", sq, np.array([0.0, -1.0]), "m").tolist() == [2.0, 1e-12]


def test_min_norm_simplex_two_tasks_by_hand() -> None:
    for g in ([[1.0, 0.2], [0.2, 3.0]], [[2.0, -1.0], [-1.0, 1.0]], [[1.0, 1.5], [1.5, 4.0]]):
        g = np.array(g)
        a = min(max((g[1, 1] - g[0, 1]) / (g[0, 0] + g[1, 1] - 2 * g[0, 1]), 0.0), 1.0)
        assert min_norm_simplex(g) == pytest.approx([a, 1 - a], abs=1e-7)
    assert min_norm_simplex(np.zeros((3, 3))).tolist() == pytest.approx([1 / 3] * 3)
    assert min_norm_simplex(np.array([[5.0]])).tolist() == [1.0]
    dep = np.array([[1.0, 2.0], [2.0, 4.0]])  # linearly dependent: all weight on the shorter gradient
    assert min_norm_simplex(dep) == pytest.approx([1.0, 0.0], abs=1e-6)


def test_mgda_effective_weights_by_normalization() -> None:
    j = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=F64)
    losses = torch.tensor([2.0, 0.5], dtype=F64)
    for kind, n in (("none", [1.0, 1.0]), ("l2", [3.0, 1.0]), ("loss", [2.0, 0.5]), ("loss+", [6.0, 0.5])):
        m = registry.build("mgda", 2, normalization=kind)
        d = m.direction(j, losses)
        g = np.diag([9.0, 1.0]) / np.outer(n, n)
        alpha = min_norm_simplex(g)
        w = 2 * alpha / np.array(n)
        assert m.last_weights.tolist() == pytest.approx(w.tolist())
        assert d.tolist() == pytest.approx((w @ j.numpy()).tolist())
    with pytest.raises(ConfigError, match=r"mgda.normalization must be one of \['none', 'l2', 'loss', 'loss\+'\], "
                                          r"got 'max'"):
        registry.get("mgda")(2, normalization="max")


# --- survivors of the 2026-11-28 mutation run over every module of trainables/weighting/ (docs/testing.md) --------
def test_every_methods_constructor_defaults_are_its_declared_hyperparameter_defaults() -> None:
    """build() fills the HParam defaults; a method class called directly must default to the same values (two
    declarations of one default that must agree: each method's signature against its HParam list)."""
    import inspect

    checked = 0
    for name in registry.names():
        cls = registry.get(name)
        sig = inspect.signature(cls.__init__).parameters
        for hp in cls.hparams:
            if hp.name in sig and sig[hp.name].default is not inspect.Parameter.empty:
                assert sig[hp.name].default == hp.default, (name, hp.name)
                checked += 1
    assert checked > 40


def test_a_method_class_called_directly_equals_the_built_method() -> None:
    """cls(T) with the signature's defaults holds the same settings as build(name, T) with the declared HParam
    defaults (the plain attributes: rates, sizes, counters, flags)."""
    plain = (int, float, str, bool)
    for name in registry.names():
        cls = registry.get(name)
        built, direct = registry.build(name, 3), cls(3)
        a = {k: v for k, v in vars(built).items() if isinstance(v, plain)}
        b = {k: v for k, v in vars(direct).items() if isinstance(v, plain)}
        assert a == b, name


def test_exact_messages_of_bad_hyperparameters_and_states() -> None:
    from trainables.weighting._sac import ReplayBuffer
    from trainables.weighting.nash_mtl import NoBargainingSolution, bargaining_weights

    for frac in (0.0, 1.0):
        with pytest.raises(ConfigError, match="moml needs outer_lr > 0, inner_lr > 0 and 0 < meta_fraction < 1"):
            registry.build("moml", 2, meta_fraction=frac)
    with pytest.raises(ConfigError, match=re.escape("gradnorm needs alpha >= 0 and lr > 0, got alpha=-1.0, lr=0.025")):
        registry.build("gradnorm", 2, alpha=-1.0)
    with pytest.raises(ConfigError, match=re.escape("igb_v2.sac_batch must be > 0, got 0")):
        registry.get("igb_v2")(2, sac_batch=0)
    with pytest.raises(RuntimeError, match="^cannot sample an empty replay buffer$"):
        ReplayBuffer(2, 2, 4).sample(1, torch.Generator().manual_seed(0))
    g = np.diag([4.0, 0.0, 1.0, 0.0])
    with pytest.raises(NoBargainingSolution, match=re.escape("task(s) [1, 3] have a zero gradient")):
        bargaining_weights(g)


def test_split_hparams_routes_prefixed_and_plain_keys_to_their_part() -> None:
    assert registry.split_hparams("uw+cagrad", {"cagrad.c": 0.3, "uw.lr": 0.1}) == ({"lr": 0.1}, {"c": 0.3})
    assert registry.split_hparams("uw+cagrad", {"c": 0.3, "lr": 0.1}) == ({"lr": 0.1}, {"c": 0.3})


def test_sac_actor_log_density_and_initial_temperature() -> None:
    """The actor's log-density of u = mu + std * noise is the diagonal normal's (torch.distributions); the
    temperature starts at alpha."""
    from trainables.weighting._sac import SAC, Actor

    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        actor = Actor(3, 3, 8)
    state = torch.rand(5, 3, generator=g)
    noise = torch.randn(5, 3, generator=g)
    action, logp = actor(state, noise)
    h = actor.body(state)
    mu, log_std = actor.mu(h), actor.log_std(h).clamp(-20, 2)
    u = mu + log_std.exp() * noise
    expected = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1, keepdim=True)
    assert torch.allclose(logp, expected, atol=1e-5)
    assert torch.allclose(action, 3 * torch.softmax(u, -1))
    sac = SAC(3, 3, torch.Generator().manual_seed(0), hidden=8, alpha=0.2)
    assert float(sac.log_alpha.detach().exp()) == pytest.approx(0.2)


def test_dwa_weights_come_in_the_losses_dtype() -> None:
    m = registry.build("dwa", 2)
    w = m.weights(torch.tensor([1.0, 2.0], dtype=F64))
    assert w.dtype == F64 and torch.equal(w, torch.ones(2, dtype=F64))


def test_cdtt_angle_fix_moves_the_direction_onto_the_conflicting_tasks_hyperplane() -> None:
    """When v = d + sum_t tau_t (g_t - d)/|g_t - d| conflicts with task i (v . g_i < 0), CDTT replaces it by the
    point where the segment from g_i to v crosses the hyperplane orthogonal to g_i: g_i + s (v - g_i) with
    s = |g_i|^2 / (|g_i|^2 - v . g_i), written out here from the vectors (not the Gramian)."""
    from trainables.weighting.cdtt import tensioned_weights

    jac = np.array([[1.0, 0.0, 0.2], [-0.6, 1.0, 0.0], [0.1, 0.3, 1.0]])
    c, tau = np.array([0.4, 0.3, 0.3]), np.array([0.1, 2.0, 0.2])
    d = c @ jac
    v = d + sum(tau[t] * (jac[t] - d) / np.linalg.norm(jac[t] - d) for t in range(3))
    assert list(jac @ v < 0) == [True, False, False]  # conflicts with task 0 only
    g0 = jac[0]
    s = g0 @ g0 / (g0 @ g0 - v @ g0)
    expected = g0 + s * (v - g0)
    w, degenerate = tensioned_weights(jac @ jac.T, c, tau)
    assert not degenerate
    assert np.allclose(w @ jac, expected, atol=1e-12)
    assert abs(float(w @ jac @ g0)) < 1e-12


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_sample_puts_the_weights_on_the_asked_device(name: str) -> None:
    """On the 'meta' device (no GPU in the fast suite): the weights go where the losses are."""
    w = sample(name, 3, torch.Generator().manual_seed(0), device="meta")
    assert w.device.type == "meta" and w.shape == (3,)
