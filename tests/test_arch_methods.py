"""Architectures other than HPS with a loss weighting (UW), random weighting (RLW) and a LOSS+GRAD
combination (RLW+PCGrad, parameter space): one full-batch SGD step of the trainer moves every
parameter by exactly the gradient written out by hand on a copy of the initial model.

Full batch (batch size = training set) makes the step independent of the data order; SGD with
lr 1 and no momentum makes ``theta_0 - theta_1`` the gradient itself. Expected gradients:
``d(sum_t w_t L_t)/d theta`` with UW's first weights 1/2 (Kendall et al., log-variances at 0) and
RLW's ``T softmax(N(0, 1))`` drawn from the method's generator state before the step (Lin et al.,
Algorithm 1); for RLW+PCGrad the shared parameters get PCGrad (Yu et al., Algorithm 1, two tasks)
of the loss-weighted task gradients and each task's own parameters its loss-weighted gradient.
"""

from __future__ import annotations

import copy

import pytest
import torch

from trainables.config import TrainConfig
from trainables.batching import batches
from trainables.trainer import Trainer

ARCHS = ("cross_stitch", "nddr", "mtan", "mmoe")
N = 32


def _trainer(arch: str, method: str, space: str | None) -> Trainer:
    return Trainer(TrainConfig(dataset="multi_digits", arch=arch, method=method, space=space, epochs=1,
                               batch_size=N, max_steps_per_epoch=1, optimizer="sgd", lr=1.0, momentum=0.0,
                               weight_decay=0.0, seed=3, device="cpu", num_threads=1,
                               dataset_options={"n_train": N, "n_val": 8, "n_test": 8, "width": 8}))


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def _grad(loss: torch.Tensor, params: list) -> torch.Tensor:
    """d loss / d params, zeros for parameters the loss does not use (another task's column)."""
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return _flat([torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)])


def _pcgrad_two(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """PCGrad for two tasks: each gradient loses its component along the other when they conflict."""
    d1, d2 = g1.clone(), g2.clone()
    dot = torch.dot(g1, g2)
    if dot < 0:
        d1 = g1 - dot / torch.dot(g2, g2) * g2
        d2 = g2 - dot / torch.dot(g1, g1) * g1
    return d1 + d2


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method,space", [("uw", None), ("rlw", None), ("rlw+pcgrad", "param")])
def test_one_step_moves_the_parameters_by_the_hand_written_gradient(arch: str, method: str, space) -> None:
    tr = _trainer(arch, method, space)
    model0 = copy.deepcopy(tr.model)
    gen = tr.loss_method.generator
    state = gen.get_state() if gen is not None else None
    shared0 = [p.detach().clone() for p in tr.model.shared_parameters()]
    tasks0 = {t: [p.detach().clone() for p in tr.model.task_parameters(t)] for t in tr.tasks}
    list(tr.epochs())

    # the hand-written step on the copy
    if method == "uw":
        w = torch.tensor([0.5, 0.5])
    else:
        g = torch.Generator()
        g.set_state(state)
        w = 2 * torch.softmax(torch.randn(2, generator=g), dim=0)
    (x, y), = list(batches(tr.splits.train, N, None, torch.device("cpu")))
    model0.train()
    out = model0(x)
    losses = [tr.bench.loss(t, out[t], y[t]) for t in tr.tasks]
    shared = list(model0.shared_parameters())
    per_task = [_grad(w[i] * losses[i], shared) for i in range(2)]
    want_shared = per_task[0] + per_task[1] if method != "rlw+pcgrad" else _pcgrad_two(*per_task)
    got_shared = _flat([a - b.detach() for a, b in zip(shared0, tr.model.shared_parameters())])
    torch.testing.assert_close(got_shared, want_shared, rtol=2e-3, atol=1e-5)
    for i, t in enumerate(tr.tasks):
        params = list(model0.task_parameters(t))
        want = _grad(w[i] * losses[i], params)
        got = _flat([a - b.detach() for a, b in zip(tasks0[t], tr.model.task_parameters(t))])
        torch.testing.assert_close(got, want, rtol=2e-3, atol=1e-5)
