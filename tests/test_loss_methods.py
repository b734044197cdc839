"""Loss-weighting methods against their papers' defining properties."""

from __future__ import annotations

import pytest
import torch

from trainables import weighting
from trainables.weighting.sampling import DISTRIBUTIONS, sample


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("num_tasks", [2, 3, 7])
def test_random_weights_have_equal_expectation_one(dist: str, num_tasks: int) -> None:
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(dist, num_tasks, g) for _ in range(5000)])
    assert torch.all(draws >= 0)
    # every draw sums to T (the simplex scaled by T), so E[w_t] = 1 for every task
    assert torch.allclose(draws.sum(1), torch.full((len(draws),), float(num_tasks)), atol=1e-4)
    mean = draws.mean(0)
    se = draws.std(0) / len(draws) ** 0.5
    assert torch.all((mean - 1).abs() < 5 * se + 1e-3), mean


def test_c_bernoulli_picks_exactly_one_task() -> None:
    m = weighting.build("rlw", 5, distribution="c-bernoulli", seed=3)
    for _ in range(200):
        w = m.weights(torch.ones(5))
        assert int((w > 0).sum()) == 1 and float(w.sum()) == pytest.approx(5.0)


def test_bernoulli_is_never_all_zero_and_normalised() -> None:
    m = weighting.build("rlw", 2, distribution="bernoulli", seed=1)
    for _ in range(500):
        w = m.weights(torch.ones(2))
        assert float(w.sum()) == pytest.approx(2.0)


def test_rlw_same_seed_same_weights_and_independent_of_global_rng() -> None:
    a = weighting.build("rlw", 3, seed=7)
    b = weighting.build("rlw", 3, seed=7)
    wa = [a.weights(torch.ones(3)) for _ in range(5)]
    torch.manual_seed(123)
    torch.rand(100)  # other random draws must not change RLW's weights
    wb = [b.weights(torch.ones(3)) for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    c = weighting.build("rlw", 3, seed=8)
    assert not torch.equal(c.weights(torch.ones(3)), wa[0])


def test_ew_and_fixed() -> None:
    assert torch.equal(weighting.build("ew", 4).weights(torch.rand(4)), torch.ones(4))
    w = weighting.build("fixed", 3, task_weights=[1, 2, 1]).weights(torch.rand(3))
    assert torch.allclose(w, torch.tensor([0.75, 1.5, 0.75]))
    with pytest.raises(ValueError, match="task_weights"):
        weighting.build("fixed", 3, task_weights=[1, 2])
    with pytest.raises(ValueError, match="task_weights"):
        weighting.build("fixed", 2, task_weights=[-1, 2])


def test_uw_gradient_matches_kendall_objective() -> None:
    m = weighting.build("uw", 2)
    with torch.no_grad():
        m.log_var.copy_(torch.tensor([0.3, -0.2]))
    losses = torch.tensor([1.5, 0.4])
    obj = (m.weights(losses) * losses).sum() + m.regularizer()
    obj.backward()
    s = torch.tensor([0.3, -0.2])
    # d/ds [L/(2e^s) + s/2] = -L/(2e^s) + 1/2
    assert torch.allclose(m.log_var.grad, -losses / (2 * torch.exp(s)) + 0.5, atol=1e-6)
    # effective weights are 1/(2 e^s)
    assert torch.allclose(m.weights(losses).detach(), 0.5 * torch.exp(-s))


def test_imtl_l_stationary_point_equalises_scaled_losses() -> None:
    m = weighting.build("imtl_l", 3, lr=0.1)
    losses = torch.tensor([4.0, 1.0, 0.25])
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(2000):
        opt.zero_grad()
        ((m.weights(losses) * losses).sum() + m.regularizer()).backward()
        opt.step()
    scaled = m.weights(losses).detach() * losses
    assert torch.allclose(scaled, torch.ones(3), atol=1e-3)


def test_dwa_weights_from_loss_ratios() -> None:
    m = weighting.build("dwa", 2, temperature=2.0)
    assert torch.equal(m.weights(torch.ones(2)), torch.ones(2))
    m.end_epoch(1, torch.tensor([1.0, 1.0]))
    assert torch.equal(m.weights(torch.ones(2)), torch.ones(2))  # weights stay 1 for two epochs
    m.end_epoch(2, torch.tensor([0.5, 1.0]))
    r = torch.tensor([0.5, 1.0]) / 2.0
    expected = 2 * torch.softmax(r, 0)
    assert torch.allclose(m.weights(torch.ones(2)), expected)
    assert float(m.weights(torch.ones(2)).sum()) == pytest.approx(2.0)


def test_gls_gradient_is_that_of_t_times_geometric_mean() -> None:
    losses = torch.tensor([0.5, 2.0, 3.0], requires_grad=True)
    (3 * losses.prod() ** (1 / 3)).backward()
    w = weighting.build("gls", 3).weights(losses.detach())
    assert torch.allclose(w, losses.grad, atol=1e-6)
    assert torch.allclose(weighting.build("gls", 3).weights(torch.full((3,), 2.0)), torch.ones(3))


def test_igb_v1_weights_on_log_losses() -> None:
    m = weighting.build("igb_v1", 2)
    losses = torch.tensor([2.0, 0.5])
    assert torch.allclose(m.weights(losses), 1 / losses)  # first epoch: equal weights on log losses
    m.end_epoch(1, torch.tensor([4.0, 1.0]))
    w_log = 2 * torch.softmax(losses / torch.tensor([4.0, 1.0]), 0)
    assert torch.allclose(m.weights(losses), w_log / losses)


def test_famo_effective_weights_and_update_direction() -> None:
    m = weighting.build("famo", 2, gamma=0.0, lr=0.1)
    losses = torch.tensor([1.0, 1.0])
    w = m.weights(losses)
    assert torch.allclose(w, torch.ones(2))  # equal logits, equal losses -> EW
    # task 0 improved (log loss dropped), task 1 did not: FAMO shifts weight toward task 1
    m.after_step(torch.tensor([0.5, 1.0]))
    w2 = m.weights(torch.tensor([1.0, 1.0]))
    assert w2[1] > w2[0] and float(w2.sum()) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(RuntimeError, match="before weights"):
        weighting.build("famo", 2).after_step(torch.ones(2))


def test_registry_errors_list_valid_names() -> None:
    with pytest.raises(ValueError, match="valid: .*ew.*rlw"):
        weighting.build("nope", 2)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        weighting.build("dwa", 2, temp=1)
    with pytest.raises(ValueError, match="must be one of"):
        weighting.build("rlw", 2, distribution="gauss")
    with pytest.raises(ValueError, match="LOSS\\+GRAD"):
        weighting.build_pipeline("pcgrad+rlw", 2)
    with pytest.raises(ValueError, match="unknown method"):
        weighting.build_pipeline("rlw+nope", 2)


def test_every_method_declares_defaults_inside_its_search_range() -> None:
    for name in weighting.names():
        for p in weighting.get(name).hparams:
            if p.tunable and p.kind in ("float", "int"):
                assert p.low is not None and p.high is not None, (name, p.name)
                assert p.low <= p.default <= p.high, (name, p.name)
            if p.tunable and p.kind == "categorical":
                assert p.choices and p.default in p.choices, (name, p.name)
