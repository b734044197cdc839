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
