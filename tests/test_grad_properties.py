"""Contract tests shared by every registered gradient method: declarations, hyperparameter
validation, shapes/dtypes, scale with identical task gradients, seeded randomness."""

from __future__ import annotations

import math

import pytest
import torch

from trainables import weighting
from trainables.weighting import registry

GRAD = weighting.names("grad")
LOSS = 0.7  # common loss value in the identical-task tests


def _rep_only(name: str) -> bool:
    return registry.get(name).spaces == ("rep",)


def _jacobian(name: str, t: int, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """[T, P] for parameter-space methods, [T, batch, features] for representation-only ones."""
    shape = (t, 4, 3) if _rep_only(name) else (t, 12)
    return torch.randn(shape, generator=gen, dtype=dtype)


def test_expected_methods_registered() -> None:
    expected = {"rgw", "mgda", "mgda_ub", "gradnorm", "pcgrad", "graddrop", "imtl_g", "gradvac", "cagrad",
                "nash_mtl", "aligned_mtl", "upgrad", "fairgrad", "db_mtl"}
    assert expected <= set(GRAD)


@pytest.mark.parametrize("name", GRAD)
def test_declarations(name: str) -> None:
    cls = registry.get(name)
    assert cls.kind == "grad" and cls.paper
    assert cls.spaces and set(cls.spaces) <= {"param", "rep"}
    assert len(set(cls.spaces)) == len(cls.spaces)
    assert cls.default_space in cls.spaces
    names = [p.name for p in cls.hparams]
    assert len(names) == len(set(names))
    if cls.draws_random:
        assert "seed" in names
    for p in cls.hparams:
        assert p.validate(p.default, name) == p.default
        if p.kind == "categorical":
            assert p.choices and p.default in p.choices
        elif p.kind in ("float", "int"):
            if p.tunable:
                assert p.low is not None and p.high is not None, f"{name}.{p.name} has no search range"
            if p.low is not None and p.high is not None:
                assert p.low < p.high
                assert p.low <= p.default <= p.high, f"{name}.{p.name} default outside its range"
                if p.log:
                    assert p.low > 0
            space = p.search_space()
            assert space["type"] == p.kind


@pytest.mark.parametrize("name", GRAD)
def test_unknown_hyperparameter_raises(name: str) -> None:
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        registry.build(name, 2, not_a_hparam=1)


BAD_VALUES = [
    ("rgw", {"distribution": "gaussian"}), ("mgda", {"normalization": "l1"}), ("mgda_ub", {"normalization": 3}),
    ("gradnorm", {"alpha": -1.0}), ("gradnorm", {"lr": 0.0}), ("gradnorm", {"alpha": "high"}),
    ("graddrop", {"leak": 1.5}), ("gradvac", {"beta": 2.0}), ("cagrad", {"c": -0.1}), ("cagrad", {"rescale": 3}),
    ("cagrad", {"c": float("nan")}), ("nash_mtl", {"update_every": 0}), ("nash_mtl", {"max_norm": -1.0}),
    ("nash_mtl", {"max_iter": 2.5}), ("aligned_mtl", {"scale_mode": "max"}), ("upgrad", {"reg_eps": -1.0}),
    ("fairgrad", {"alpha": 0.0}), ("db_mtl", {"beta": 1.0}), ("db_mtl", {"beta_sigma": -1.0}),
]


@pytest.mark.parametrize("name,hp", BAD_VALUES)
def test_bad_values_raise(name: str, hp: dict) -> None:
    with pytest.raises(ValueError):
        registry.build(name, 3, **hp)


def test_bad_jacobian_shapes_raise() -> None:
    m = registry.build("cagrad", 3)
    with pytest.raises(ValueError, match="rows"):
        m.direction(torch.randn(2, 5), torch.ones(3))
    with pytest.raises(ValueError, match="losses"):
        m.direction(torch.randn(3, 5), torch.ones(2))


@pytest.mark.parametrize("name", GRAD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_last_weights(name: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    m = registry.build(name, 3)
    for space in m.spaces:
        j = torch.randn((3, 12) if space == "param" else (3, 4, 3), generator=gen, dtype=dtype)
        losses = torch.rand(3, generator=gen, dtype=dtype) + 0.5
        d = m.direction(j, losses)
        assert d.shape == j.shape[1:] and d.dtype == dtype and d.device == j.device
        assert torch.isfinite(d).all()
        if m.last_weights is not None:
            assert m.last_weights.shape == (3,) and m.last_weights.dtype == dtype


DETERMINISTIC = [n for n in GRAD if not registry.get(n).draws_random]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_relabelling_the_tasks_permutes_the_weights_and_keeps_the_direction(name: str) -> None:
    """No method may depend on the order in which tasks are listed: with the rows of J and the losses
    permuted, the direction is the same and the logged weights are permuted alike (an independent
    property; the direction is built from the weights, so comparing them with each other says nothing)."""
    gen = torch.Generator().manual_seed(7)
    perm = torch.tensor([2, 0, 1])
    for space in registry.get(name).spaces:
        j = torch.randn((3, 12) if space == "param" else (3, 4, 3), generator=gen, dtype=torch.float64)
        j[1] *= 3.0  # unequal norms and losses: a method that ignores them is not excused by symmetry
        losses = torch.tensor([0.9, 0.4, 1.7], dtype=torch.float64)
        a, b = registry.build(name, 3), registry.build(name, 3)
        for _ in range(3):  # a few steps: stateful methods (EMAs, loss ratios) keep their task order too
            d = a.direction(j, losses)
            d_perm = b.direction(j[perm], losses[perm])
            torch.testing.assert_close(d_perm, d, rtol=2e-3, atol=1e-6)
            if a.last_weights is not None:
                torch.testing.assert_close(b.last_weights, a.last_weights[perm], rtol=2e-3, atol=1e-6)
            else:
                assert b.last_weights is None


def _identical_factor(name: str, t: int, norm: float) -> float | None:
    """Documented multiple of g for T identical gradients g (|g| = norm, all losses LOSS);
    None for methods documented elsewhere (only a positive multiple is checked for them)."""
    c = 0.4
    return {
        "rgw": t, "pcgrad": t, "graddrop": t, "imtl_g": t, "gradvac": t, "aligned_mtl": t, "upgrad": t,
        "gradnorm": t, "mgda": t / (LOSS * norm), "mgda_ub": t / (LOSS * norm),  # default loss+
        "cagrad": t * (1 + c) / (1 + c * c),
        "nash_mtl": min(math.sqrt(t), 1.0) / norm,
        "fairgrad": t * (t * norm**2) ** -0.5,
        "db_mtl": t * (1 - 0.9) / LOSS,  # first step, EMA from zero
    }.get(name)


@pytest.mark.parametrize("name", GRAD)
@pytest.mark.parametrize("t", [2, 3])
def test_identical_tasks_reduce_to_gradient_descent(name: str, t: int) -> None:
    gen = torch.Generator().manual_seed(t)
    g = _jacobian(name, 1, gen)[0].abs() + 0.1  # positive entries: GradDrop's batch sums have one sign
    g[..., 0] *= -1 if not _rep_only(name) else 1
    j = g.expand(t, *g.shape).clone()
    m = registry.build(name, t)
    d = m.direction(j, torch.full((t,), LOSS, dtype=j.dtype))
    factor = _identical_factor(name, t, float(g.norm()))
    if factor is None:  # a method registered by another module: a positive multiple of g
        factor = float((d * g).sum() / (g * g).sum())
        assert factor > 0
    torch.testing.assert_close(d, factor * g, rtol=2e-3, atol=1e-6)


def test_mgda_identical_factor_per_normalization() -> None:
    g = torch.tensor([3.0, -4.0], dtype=torch.float64)  # |g| = 5
    j = g.expand(3, 2).clone()
    for norm, factor in [("none", 3.0), ("l2", 3 / 5), ("loss", 3 / LOSS), ("loss+", 3 / (5 * LOSS))]:
        d = registry.build("mgda", 3, normalization=norm).direction(j, torch.full((3,), LOSS, dtype=torch.float64))
        torch.testing.assert_close(d, factor * g)


RANDOM = [n for n in GRAD if registry.get(n).draws_random]


def test_random_methods_are_the_expected_ones() -> None:
    assert set(RANDOM) == {"rgw", "pcgrad", "graddrop", "gradvac"}


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_directions(name: str) -> None:
    gen = torch.Generator().manual_seed(5)
    js = [_jacobian(name, 4, gen) for _ in range(6)]
    losses = torch.ones(4, dtype=torch.float64)

    def run(seed: int) -> list[torch.Tensor]:
        m = registry.build(name, 4, generator=torch.Generator().manual_seed(seed))
        return [m.direction(j, losses) for j in js]

    state = torch.get_rng_state()
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(torch.get_rng_state(), state), "the method touched the global RNG"
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.allclose(x, z) for x, z in zip(a, c)), "a different seed gave the same directions"
    # the seed hyperparameter seeds the method when no generator is given
    m1, m2 = registry.build(name, 4, seed=3), registry.build(name, 4, seed=3)
    assert all(torch.equal(m1.direction(j, losses), m2.direction(j, losses)) for j in js)


@pytest.mark.parametrize("name", GRAD)
def test_checkpoint_roundtrip_continues_identically(name: str) -> None:
    """The trainer checkpoints a method's state as tensors and plain data (trainables.state), loaded with
    weights_only=True into a freshly built method: state (EMAs, weights, generators, solver warm starts)
    must survive, so a resumed run gives the same directions."""
    import io

    from trainables import state

    gen = torch.Generator().manual_seed(2)
    js = [_jacobian(name, 3, gen) for _ in range(5)]
    losses = torch.rand(3, generator=gen, dtype=torch.float64) + 0.5
    m = registry.build(name, 3, generator=torch.Generator().manual_seed(0))
    for j in js[:2]:
        m.direction(j, losses)
    buf = io.BytesIO()
    torch.save(state.module_state(m), buf)
    buf.seek(0)
    resumed = registry.build(name, 3, generator=torch.Generator().manual_seed(99))
    state.load_module_state(resumed, torch.load(buf, weights_only=True))
    for j in js[2:]:
        assert torch.equal(m.direction(j, losses), resumed.direction(j, losses))
