"""The backward paths against the plain step they replace (issue 17): seeded runs of a few Adam steps.

Parameter space without a single shared representation (mtan, cross_stitch, nddr, mmoe, and a
multi-input dataset) takes the shared parameters' rows *and* the task parameters' gradients from
the same per-task passes over the separate task losses, and writes the shared ``.grad`` from the
direction. The reference written here is the step as it was before: the rows of the stacked
weighted losses (the same Jacobian candidate), then one more backward pass of
``sum_t w_t L_t + (UW's objective)`` for the heads and UW's log-variances. Both train a copy of
the same seeded trainer (UW+CAGrad, SGD with momentum) on the same batches.

Expected: bit-identical parameters where every task parameter serves one task (its gradient is
the same single term either way); equal to float tolerance where a "task" parameter serves
several tasks (cross_stitch's ``shared: units``: the columns get every task's gradient, summed
over the tasks' passes instead of accumulated inside one backward pass). hps in parameter space
is bit-identical both ways: looped, one pass per task through the whole model over the shared
parameters and that task's head; batched, the rows chained through the representation
(``J_rep d rep/d theta``). (SGD, not Adam: a convolution's bias before a batch norm has a
gradient that is zero up to roundoff, ~1e-7, which Adam's normalisation turns into steps of +-lr.)
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from trainables import jacobian
from trainables.batching import train_batches
from trainables.config import TrainConfig
from trainables.trainer import Trainer

STEPS = 3
OPTS = {"n_train": 48, "n_val": 8, "n_test": 8}


def _trainer(dataset: str, arch: str, space: str, force: str, dataset_options: dict | None = None,
             arch_options: dict | None = None, method: str = "uw+cagrad", batch_size: int = 16) -> Trainer:
    tr = Trainer(TrainConfig(dataset=dataset, arch=arch, method=method, space=space, epochs=1, batch_size=batch_size,
                             seed=5, device="cpu", num_threads=1, optimizer="sgd", lr=0.05, momentum=0.9,
                             dataset_options=dataset_options or OPTS, arch_options=arch_options or {}))
    tr.jacobian.force = force
    return tr


def _losses(tr: Trainer, batch) -> tuple[torch.Tensor, dict]:
    if tr.bench.multi_input:
        out = {t: tr.model(batch[t][0], (t,))[t] for t in tr.tasks}
        return torch.stack([tr.bench.loss(t, out[t], batch[t][1][t]) for t in tr.tasks]).float(), out
    x, y = batch
    out = tr.model(x)
    return torch.stack([tr.bench.loss(t, out[t], y[t]) for t in tr.tasks]).float(), out


def _write_shared(tr: Trainer, direction: torch.Tensor) -> None:
    offset = 0
    for p in tr.shared:
        p.grad = direction[offset: offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def reference_param_step(tr: Trainer, batch, force: str) -> None:
    """The parameter-space step before issue 17's part 4: a second weighted backward pass for the heads."""
    tr.optimizer.zero_grad(set_to_none=True)
    losses, _ = _losses(tr, batch)
    w = tr.loss_method.weights(losses.detach())
    weighted = w.detach() * losses
    t = len(tr.tasks)
    rows = jacobian.dense(jacobian.CANDIDATES[force](weighted, tr.shared, torch.eye(t)), tr.shared, t)
    jac = torch.cat([r.reshape(t, -1) for r in rows], dim=1)
    direction = tr.grad_method.direction(jac, weighted.detach())
    obj = weighted.sum() + (w * losses.detach()).sum() + tr.loss_method.regularizer()  # UW's objective
    torch.autograd.backward(obj, inputs=tr.task_params + tr.method_params)
    _write_shared(tr, direction)
    tr.optimizer.step()


def reference_rep_step(tr: Trainer, batch, force: str) -> None:
    """Representation space, the plain way: one backward per task from a detached copy of the
    representation, the heads from ``sum_t w_t L_t``, then ``rep.backward(direction)``."""
    tr.optimizer.zero_grad(set_to_none=True)
    x, y = batch
    rep = tr.model.encode(x)
    leaf = rep.detach().requires_grad_(True)
    out = tr.model.decode(leaf, x)
    losses = torch.stack([tr.bench.loss(t, out[t], y[t]) for t in tr.tasks]).float()
    w = tr.loss_method.weights(losses.detach())
    weighted = w.detach() * losses
    rows = torch.stack([torch.autograd.grad(weighted[i], leaf, retain_graph=True)[0] for i in range(len(tr.tasks))])
    direction = tr.grad_method.direction(rows, weighted.detach())
    obj = weighted.sum() + (w * losses.detach()).sum() + tr.loss_method.regularizer()
    torch.autograd.backward(obj, inputs=tr.task_params + tr.method_params)
    rep.backward(direction)
    tr.optimizer.step()


def _run(tr: Trainer, ref: Trainer, space: str, force: str, steps: int = STEPS) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    data = list(train_batches(tr.splits.train, tr.tasks, tr.bench.multi_input, tr.cfg.batch_size, gen, torch.device("cpu")))
    assert len(data) >= steps
    step = reference_rep_step if space == "rep" else reference_param_step
    for i in range(steps):
        torch.manual_seed(i)  # the same dropout masks for both
        tr.train_step(data[i], 1, i + 1)
        torch.manual_seed(i)
        step(ref, data[i], force)
    params = lambda m: [p.detach() for p in m.model.parameters()] + [p.detach() for p in m.method_params]  # noqa: E731
    return params(tr), params(ref)


CASES = [
    # dataset, arch, arch options, space, bit-identical?
    ("multi_digits", "mtan", {}, "param", True),
    ("multi_digits", "mmoe", {}, "param", True),
    ("multi_digits", "cross_stitch", {}, "param", True),
    ("multi_digits", "nddr", {}, "param", True),
    ("multi_digits", "cross_stitch", {"shared": "units"}, "param", False),
    ("multi_digits", "hps", {}, "rep", True),
    ("multi_digits", "hps", {}, "param", True),
]


def _check(dataset: str, arch: str, arch_options: dict, space: str, identical: bool, force: str,
           closed_form: bool = True) -> None:
    opts = {"n_train": 32, "n_val": 4, "n_test": 4} if dataset == "scenes" else dict(OPTS, width=8)
    tr = _trainer(dataset, arch, space, force, opts, arch_options, batch_size=8 if dataset == "scenes" else 16)
    if not closed_form:  # UW's objective back-propagated through its weights' graph (a method without a closed form)
        tr.loss_method.objective_grads = lambda losses, w: None
    ref = copy.deepcopy(tr)
    start = [p.detach().clone() for p in tr.model.parameters()]
    got, want = _run(tr, ref, space, force)
    if identical:
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    else:
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(got, start))  # the steps moved the model


@pytest.mark.parametrize("force", ["looped", "batched"])
@pytest.mark.parametrize("dataset,arch,arch_options,space,identical", CASES)
def test_path_equals_the_plain_step(dataset: str, arch: str, arch_options: dict, space: str, identical: bool,
                                    force: str) -> None:
    _check(dataset, arch, arch_options, space, identical, force)


@pytest.mark.parametrize("space", ["param", "rep"])
def test_path_equals_the_plain_step_without_a_closed_form(space: str) -> None:
    """UW's log-variances trained by autograd through the weights' graph (the fallback of a loss
    weighting without ``objective_grads``) give the same parameters bit for bit."""
    _check("multi_digits", "hps", {}, space, True, "looped", closed_form=False)


@pytest.mark.parametrize("arch,space,force", [("mtan", "param", "looped"), ("hps", "rep", "batched")])
def test_path_equals_the_plain_step_with_dense_heads(arch: str, space: str, force: str) -> None:
    """scenes: three dense heads (a pass from one task's loss runs through its own head only)."""
    _check("scenes", arch, {}, space, True, force)


def test_multi_input_path_equals_the_plain_step(tmp_path: Path) -> None:
    """office31 (one input batch per task, dropout in the encoder), tiny fixture images; bit-identical."""
    from test_datasets_images import write_office

    from trainables.datasets import make_splits

    root = write_office(tmp_path / "office31", {"amazon": "images", "dslr": "images", "webcam": "images"},
                        per_class=8)
    make_splits.make_splits(root)
    opts = {"root": str(root), "image_size": 16, "pretrained": False}
    tr = _trainer("office31", "hps", "param", "looped", opts, batch_size=4)
    ref = copy.deepcopy(tr)
    got, want = _run(tr, ref, "param", "looped", steps=2)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("method,space,arch", [("ew", None, "hps"), ("mgda", "param", "hps"), ("imtl_g", "rep", "hps"),
                                               ("pcgrad", "param", "mtan")])
def test_ew_without_its_multiplications_by_one_is_bit_identical(method: str, space: str | None, arch: str) -> None:
    """EW declares ``always_ones``: the trainer then leaves out ``w_t * L_t``; the steps must equal those
    with the multiplications (the attribute switched off on a copy), bit for bit, weights included."""
    tr = Trainer(TrainConfig(dataset="multi_digits", arch=arch, method=method, space=space, epochs=1, batch_size=16,
                             seed=4, num_threads=1, dataset_options=dict(OPTS, width=8)))
    ref = copy.deepcopy(tr)
    assert tr.loss_method.always_ones
    ref.loss_method.always_ones = False
    gen = torch.Generator().manual_seed(0)
    data = list(train_batches(tr.splits.train, tr.tasks, False, 16, gen, torch.device("cpu")))
    for i in range(STEPS):
        _, la, wa = tr.train_step(data[i], 1, i + 1)
        _, lb, wb = ref.train_step(data[i], 1, i + 1)
        assert torch.equal(la, lb) and torch.equal(wa, wb)
    assert all(torch.equal(a, b) for a, b in zip(tr.model.parameters(), ref.model.parameters()))


@pytest.mark.parametrize("force", ["looped", "batched"])
def test_hps_param_space_takes_the_per_task_passes_when_looped(monkeypatch: pytest.MonkeyPatch, force: str) -> None:
    """Looped: one pass per task through the whole model (no pass stopping at the representation);
    batched: the rows chained through the representation. The heads get their own gradients either way."""
    from trainables import paths

    calls = {"chained": 0}
    real = paths._rep_rows_and_head_grads

    def counted(*args):
        calls["chained"] += 1
        return real(*args)

    monkeypatch.setattr(paths, "_rep_rows_and_head_grads", counted)
    tr = _trainer("multi_digits", "hps", "param", force, dict(OPTS, width=8), method="mgda")
    gen = torch.Generator().manual_seed(0)
    x, y = next(iter(train_batches(tr.splits.train, tr.tasks, False, 16, gen, torch.device("cpu"))))
    tr.optimizer.step = lambda *a, **k: None  # keep the gradients of this step to compare
    tr.train_step((x, y), 1, 1)
    assert calls["chained"] == (0 if force == "looped" else 1)
    out = tr.model(x)
    for i, t in enumerate(tr.tasks):  # each head: the gradient of its own loss, from a separate plain backward
        want = torch.autograd.grad(tr.bench.loss(t, out[t], y[t]), tr.model.task_parameters(t), retain_graph=True)
        assert all(torch.equal(p.grad, g) for p, g in zip(tr.model.task_parameters(t), want))


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_shared_gradients_are_views_of_the_direction_unless_clipped(clip: float | None) -> None:
    """Without gradient clipping the shared ``.grad`` are views of the method's direction (no copy);
    with it they are a copy, so clipping in place leaves the direction the method returned untouched."""
    tr = Trainer(TrainConfig(dataset="multi_digits", method="mgda", space="param", epochs=1, batch_size=16, seed=1,
                             num_threads=1, grad_clip=clip, dataset_options=dict(OPTS, width=8)))
    seen = {}
    real = tr.grad_method.direction

    def keep(jac, losses):
        seen["d"] = real(jac, losses)
        seen["copy"] = seen["d"].clone()
        return seen["d"]

    tr.grad_method.direction = keep
    tr.optimizer.step = lambda *a, **k: None
    gen = torch.Generator().manual_seed(0)
    tr.train_step(next(iter(train_batches(tr.splits.train, tr.tasks, False, 16, gen, torch.device("cpu")))), 1, 1)
    grads = torch.cat([p.grad.reshape(-1) for p in tr.shared])
    d = seen["d"]
    assert torch.equal(d, seen["copy"])  # the direction itself is never changed
    if clip is None:
        assert tr.shared[0].grad.data_ptr() == d.data_ptr() and torch.equal(grads, d)
    else:
        assert tr.shared[0].grad.data_ptr() != d.data_ptr()
        total = torch.cat([p.grad.reshape(-1) for p in tr.model.parameters()]).norm()
        assert float(total) <= clip * 1.001 and not torch.equal(grads, d)


@pytest.mark.parametrize("method,arch,closed_form", [("imtl_l", "hps", True), ("uw", "mtan", True),
                                                     ("uw", "hps", False), ("imtl_l", "hps", False),
                                                     ("rlw", "hps", True)])
def test_learned_loss_weights_one_objective_equals_the_two_terms(method: str, arch: str, closed_form: bool) -> None:
    """Loss-only: the model's gradients come from one pass from the losses with gradient ``w``, the
    method's own parameters' from its closed form (``objective_grads``) or, without one, from
    back-propagating its objective through ``w``'s graph; they equal, bit for bit, those of the two
    terms ``sum_t w_t.detach() L_t`` (the model) and, with learned weights, ``sum_t w_t L_t.detach() + reg``
    (the method's log-parameters) taken by autograd, and the analytic gradient to float tolerance.
    RLW: random weights, no own parameters."""
    tr = Trainer(TrainConfig(dataset="multi_digits", arch=arch, method=method, epochs=1, batch_size=16, seed=6,
                             num_threads=1, dataset_options=dict(OPTS, width=8)))
    if not closed_form:
        tr.loss_method.objective_grads = lambda losses, w: None
    with torch.no_grad():
        for p in tr.method_params:
            p.copy_(torch.tensor([0.3, -0.7]))
    ref = copy.deepcopy(tr)
    gen = torch.Generator().manual_seed(0)
    batch = next(iter(train_batches(tr.splits.train, tr.tasks, False, 16, gen, torch.device("cpu"))))
    tr.optimizer.step = lambda *a, **k: None
    tr.train_step(batch, 1, 1)
    losses, _ = _losses(ref, batch)
    w = ref.loss_method.weights(losses.detach())
    model_params = [p for p in ref.model.parameters() if p.requires_grad]
    want = torch.autograd.grad((w.detach() * losses).sum(), model_params)
    got = [p.grad for p in tr.model.parameters() if p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    if method == "rlw":
        assert not tr.method_params and not torch.equal(w, torch.ones_like(w))
        return
    (want_s,) = torch.autograd.grad((w * losses.detach()).sum() + ref.loss_method.regularizer(), ref.method_params)
    assert (ref.loss_method.objective_grads(losses.detach(), w.detach()) is not None) == closed_form
    (s,) = tr.method_params
    assert torch.equal(s.grad, want_s)
    s0, l0 = torch.tensor([0.3, -0.7]), losses.detach()
    closed = torch.exp(s0) * l0 - 1 if method == "imtl_l" else -l0 / (2 * torch.exp(s0)) + 0.5
    torch.testing.assert_close(s.grad, closed)


def test_hps_param_space_measures_the_whole_paths_it_then_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured calls time each path whole (looped: the per-task passes through the whole model;
    batched: the head passes chained into one batched encoder pass), on the same graph; once the
    times separate the faster runs alone, the looped one freeing the graph in its last pass."""
    from trainables import paths

    clock = {"now": 0.0}
    calls = {"chained": 0, "direct": [], "chained_rows": paths.ParamSpace._chained_rows,
             "direct_rows": paths.ParamSpace._direct_rows}

    def chained(self, losses, rep):
        calls["chained"] += 1
        clock["now"] += 2.0
        return calls["chained_rows"](self, losses, rep)

    def direct(self, losses, retain_graph):
        calls["direct"].append(retain_graph)
        clock["now"] += 1.0
        return calls["direct_rows"](self, losses, retain_graph)

    monkeypatch.setattr(jacobian, "_PROCESS_CHOICES", {})  # measure here, not adopt an earlier test's choice
    monkeypatch.setattr(paths.ParamSpace, "_chained_rows", chained)
    monkeypatch.setattr(paths.ParamSpace, "_direct_rows", direct)
    tr = _trainer("multi_digits", "hps", "param", None, dict(OPTS, width=8), method="mgda")
    tr.jacobian.clock = lambda: clock["now"]
    gen = torch.Generator().manual_seed(0)
    data = list(train_batches(tr.splits.train, tr.tasks, False, 16, gen, torch.device("cpu")))
    for i in range(4):
        tr.train_step(data[i % len(data)], 1, i + 1)
    (entry,) = tr.jacobian.summary().values()
    assert entry["path"] == "looped" and entry["identical"] is True
    assert entry["batched_ms"] == 2000.0 and entry["looped_ms"] == 1000.0 and entry["calls"] == 3
    assert calls["chained"] == 3 and calls["direct"] == [True, True, True, False]


@pytest.mark.parametrize("grads,match", [(lambda l, w: [], "gave 0 objective gradients for 1"),
                                         (lambda l, w: [w[:1]], "shape \\(1,\\) for a parameter of shape \\(2,\\)")])
def test_a_wrong_closed_form_fails_loudly(grads, match: str) -> None:
    """A method's ``objective_grads`` of the wrong number or shape stops the step with a clear error."""
    tr = Trainer(TrainConfig(dataset="multi_digits", method="uw", epochs=1, batch_size=16, seed=6, num_threads=1,
                             dataset_options=dict(OPTS, width=8)))
    tr.loss_method.objective_grads = grads
    batch = next(iter(train_batches(tr.splits.train, tr.tasks, False, 16, torch.Generator().manual_seed(0),
                                    torch.device("cpu"))))
    with pytest.raises(RuntimeError, match=match):
        tr.train_step(batch, 1, 1)
