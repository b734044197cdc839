"""The properties every registered method must have (``litmus check-method NAME``).

Bare-tensor checks (fast): declared hyperparameters, output shapes and finiteness, seeded
determinism (and the global RNG left alone), checkpoint/restore continuing identically
(through ``trainables/state.py``, as the trainer checkpoints methods), the scale convention
(loss weightings: mean weight per task at unit losses = ``unit_weight``, EW's 1, so that
E[w] = EW's; gradient methods: identical task gradients give a positive multiple of the
common gradient, Lin et al. 2022 Sec. 3), a loss weighting's closed-form gradients of its own
objective (``objective_grads``) equal to autograd's through its weights, and a zero or
duplicated task gradient (or loss) giving finite outputs or a loud error naming the method.
Training checks (a few seconds): one epoch of a bundled benchmark in every declared space, the
same seed giving the same rows, and a run restored from its epoch-1 checkpoint giving the same
epoch 2.

Each check returns a :class:`Check`; an exception inside a check is its failure, reported
with the exception (never hidden).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from . import state, weighting
from .weighting.base import GradientMethod, LossWeighting, Method

T = 4  # tasks in the bare-tensor checks (weights summing to 1 instead of T are off by 4x)
STEPS = 6
#: the small bundled benchmark of the training checks (seconds per epoch on one CPU)
BENCHMARK = ("multi_digits", {"n_train": 200, "n_val": 100, "n_test": 100, "width": 8})


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


def _build(name: str, seed: int = 0, t: int = T) -> Method:
    return weighting.build(name, t, generator=torch.Generator().manual_seed(seed))


def _inputs(cls: type[Method], seed: int, dtype: torch.dtype = torch.float64, t: int = T) -> list[tuple[Tensor, Tensor]]:
    """(losses, Jacobian) per step; the Jacobian is [T, P] in parameter space, [T, B, F] in a rep-only method's."""
    g = torch.Generator().manual_seed(seed)
    rep_only = issubclass(cls, GradientMethod) and cls.spaces == ("rep",)
    shape = (t, 4, 3) if rep_only else (t, 12)
    return [(torch.rand(t, generator=g, dtype=dtype) + 0.5, torch.randn(shape, generator=g, dtype=dtype))
            for _ in range(STEPS)]


def _step(m: Method, losses: Tensor, jac: Tensor, step: int) -> Tensor:
    """One call as the trainer makes it: weights (or a direction), then the per-step/epoch hooks."""
    if isinstance(m, LossWeighting):
        out = m.weights(losses).detach()
        if m.needs_after_step:
            m.after_step(losses * 0.9)
    else:
        assert isinstance(m, GradientMethod)
        out = m.direction(jac, losses).detach()
    if step % 3 == 2:
        m.end_epoch(step // 3, losses)
    return out


def _run(m: Method, inputs: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
    return [_step(m, losses, jac, i) for i, (losses, jac) in enumerate(inputs)]


def _guard(name: str, fn: Callable[[], str]) -> Check:
    """Run one check: its detail on success, its assertion or exception as the failure."""
    try:
        return Check(name, True, fn())
    except AssertionError as err:
        return Check(name, False, str(err))
    except Exception as err:  # noqa: BLE001 - a failing method is this check's finding, shown with its error
        return Check(name, False, f"raised {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")


# --- bare tensors ------------------------------------------------------------
def check_hparams(cls: type[Method]) -> str:
    names = [p.name for p in cls.hparams]
    assert len(names) == len(set(names)), f"repeated hyperparameter names {names}"
    for p in cls.hparams:
        p.validate(p.default, cls.name)
        if p.kind in ("float", "int") and p.tunable:
            assert p.low is not None and p.high is not None, f"{p.name} is tunable but has no search range"
            assert p.low <= p.default <= p.high, f"{p.name}: default {p.default} outside [{p.low}, {p.high}]"
            assert not p.log or p.low > 0, f"{p.name}: a log range needs low > 0"
    if cls.draws_random:
        assert "seed" in names, "draws random numbers but has no 'seed' hyperparameter"
    return ", ".join(names) or "none"


def check_shapes(name: str) -> str:
    cls = weighting.get(name)
    for dtype in (torch.float32, torch.float64):
        m = _build(name)
        for i, (losses, jac) in enumerate(_inputs(cls, 1, dtype)):
            out = _step(m, losses, jac, i)
            want = (T,) if isinstance(m, LossWeighting) else tuple(jac.shape[1:])
            assert tuple(out.shape) == want, f"step {i} ({dtype}): output shape {tuple(out.shape)}, expected {want}"
            assert torch.isfinite(out).all(), f"step {i} ({dtype}): non-finite output {out.tolist()}"
    return f"{STEPS} steps in float32 and float64, T={T}"


def check_determinism(name: str) -> str:
    cls = weighting.get(name)
    inputs = _inputs(cls, 2)
    a = _run(_build(name, seed=7), inputs)
    torch.rand(3)  # advance the global RNG: a method that draws from it gives other outputs now
    state_b = torch.get_rng_state()
    b = _run(_build(name, seed=7), inputs)
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if not torch.equal(x, y)]
    assert not differ, f"the same seed gave different outputs at steps {differ} (random numbers not from its generator?)"
    assert torch.equal(torch.get_rng_state(), state_b), "the method draws from the global torch RNG"
    return "same seed, same outputs; global RNG untouched" + (" (draws random numbers from its generator)"
                                                               if cls.draws_random else "")


def check_restore(name: str) -> str:
    cls = weighting.get(name)
    inputs = _inputs(cls, 3)
    m = _build(name)
    _run(m, inputs[:3])
    buf = io.BytesIO()
    torch.save(state.module_state(m), buf)  # as the trainer checkpoints a method: tensors and plain data
    buf.seek(0)
    resumed = _build(name)
    state.load_module_state(resumed, torch.load(buf, weights_only=True))
    a = [_step(m, losses, jac, i + 3) for i, (losses, jac) in enumerate(inputs[3:])]
    b = [_step(resumed, losses, jac, i + 3) for i, (losses, jac) in enumerate(inputs[3:])]
    differ = [i + 3 for i, (x, y) in enumerate(zip(a, b)) if not torch.equal(x, y)]
    assert not differ, f"restored from a checkpoint after step 3, it differs at steps {differ}"
    return "state saved after 3 steps and loaded into a new instance; the next 3 steps identical"


def check_scale(name: str) -> str:
    cls = weighting.get(name)
    if issubclass(cls, LossWeighting):
        n = 100 if cls.draws_random else 20
        m = _build(name)
        ones = torch.ones(T, dtype=torch.float64)
        ws = torch.stack([_step(m, ones, torch.zeros(T, 1, dtype=torch.float64), i) for i in range(n)])
        mean = float(ws.mean())
        tol = 0.15 if cls.draws_random else 0.05  # weights summing to 1 instead of T are off by 75%
        expected = float(cls.unit_weight)
        assert abs(mean - expected) <= tol * expected, (
            f"mean weight per task at unit losses is {mean:.4g}, expected {expected:g} (sum {mean * T:.4g} instead "
            f"of {expected * T:g} for T={T}: E[w] must equal EW's; multiply simplex weights by T)")
        return f"mean weight per task {mean:.4g} (expected {expected:g}, over {n} steps at unit losses)"
    shape = (4, 3) if cls.spaces == ("rep",) else (12,)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64).abs() + 0.1
    j = g.expand(T, *shape).clone()
    d = _build(name).direction(j, torch.full((T,), 0.7, dtype=torch.float64))
    c = float((d * g).sum() / (g * g).sum())
    resid = float((d - c * g).norm() / (c * g).norm()) if c != 0 else math.inf
    assert c > 0 and resid < 2e-3, (f"T identical task gradients g gave a direction that is not a positive multiple "
                                     f"of g (factor {c:.4g}, relative residual {resid:.2g})")
    return f"identical tasks -> {c:.4g} x the common gradient (EW: {T})"


def check_objective_grads(name: str) -> str:
    """A loss weighting's closed-form gradients of its own objective equal autograd's through its weights."""
    m = _build(name)
    params = m.optimizer_params() if isinstance(m, LossWeighting) else []
    if not params:
        return "no own parameters"
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    losses = torch.rand(T, generator=g) + 0.5
    w = m.weights(losses)
    closed = m.objective_grads(losses, w.detach())
    if closed is None:
        return "no closed form: the trainer back-propagates the objective through the weights"
    reg = m.regularizer()
    obj = (w * losses).sum() + (reg if reg is not None else 0.0)
    want = torch.autograd.grad(obj, params, allow_unused=True)
    assert len(closed) == len(params), f"objective_grads gave {len(closed)} gradients for {len(params)} parameters"
    for i, (a, b, p) in enumerate(zip(closed, want, params)):
        b = torch.zeros_like(p) if b is None else b
        assert a.shape == p.shape, (f"parameter {i}: closed-form gradient of shape {tuple(a.shape)}, "
                                    f"expected {tuple(p.shape)}")
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (
            f"parameter {i}: closed-form gradient {a.tolist()} differs from autograd's {b.tolist()}")
    return f"closed form equals autograd's on {len(params)} parameter(s) at random values"


def _loud_or_finite(name: str, run: Callable[[], Tensor], what: str) -> str:
    try:
        out = run()
    except (ValueError, RuntimeError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        assert name in msg, f"{what}: raised {type(err).__name__} without naming the method: {msg}"
        return f"{what}: refused loudly ({msg[:80]})"
    assert torch.isfinite(out).all(), f"{what}: non-finite output {out.tolist()}"
    return f"{what}: finite"


def check_degenerate(name: str) -> str:
    cls = weighting.get(name)
    losses, jac = _inputs(cls, 5)[0]
    if issubclass(cls, LossWeighting):
        zero = losses.clone()
        zero[1] = 0.0
        dup = losses.clone()
        dup[1] = dup[0]
        return "; ".join([_loud_or_finite(name, lambda: _build(name).weights(zero).detach(), "a zero loss"),
                          _loud_or_finite(name, lambda: _build(name).weights(dup).detach(), "a duplicated loss")])
    zero = jac.clone()
    zero[1] = 0.0
    dup = jac.clone()
    dup[1] = dup[0]
    out = []
    for what, j in (("a zero task gradient", zero), ("a duplicated task gradient", dup)):
        out.append(_loud_or_finite(name, lambda j=j: _build(name).direction(j, losses).detach(), what))
    return "; ".join(out)


# --- training on a bundled benchmark -----------------------------------------
def _config(name: str, dataset: str, options: dict[str, Any], space: str | None, epochs: int, steps: int):
    from .config import TrainConfig

    cls = weighting.get(name)
    dist = "normal" if weighting.takes_distribution(name) else None
    return TrainConfig(dataset=dataset, method=name, distribution=dist, dataset_options=dict(options), seed=3,
                       epochs=epochs, batch_size=32, device="cpu", num_threads=1, max_steps_per_epoch=steps,
                       space=space if issubclass(cls, GradientMethod) else None)


def _rows(results: list[Any]) -> dict[tuple, float]:
    return {(r.epoch, row["split"], row["task"], row["metric"]): row["value"] for r in results for row in r.rows}


def check_declarations(name: str) -> str:
    """``check(arch, space)`` answers for every registered architecture and space: it returns or refuses with a
    one-line ``ValueError`` (anything else is a bug in the declaration)."""
    from . import architectures
    from .config import SPACES

    cls = weighting.get(name)
    spaces: tuple[str | None, ...] = SPACES if issubclass(cls, GradientMethod) else (None,)
    ok = []
    for arch in architectures.names():
        for space in spaces:
            try:
                cls.check(architectures.get(arch), space)
            except ValueError as err:
                msg = str(err).strip()
                assert msg and "\n" not in msg, f"check({arch}, {space}) refused without a one-line message"
                continue
            ok.append(arch if space is None else f"{arch}/{space}")
    assert ok, "check() refuses every architecture and space: the method can never train"
    return "trains on " + ", ".join(ok)


def check_spaces(name: str, dataset: str, options: dict[str, Any]) -> str:
    from .config import SPACES, resolve
    from .trainer import Trainer

    cls = weighting.get(name)
    if not issubclass(cls, GradientMethod):
        return "loss weighting: no gradient space"
    done = []
    for space in SPACES:
        cfg = _config(name, dataset, options, space, epochs=1, steps=2)
        if space in cls.spaces:
            results = list(Trainer(cfg).epochs())
            bad = [k for k, v in _rows(results).items() if not math.isfinite(v)]
            assert not bad, f"{space} space: non-finite metrics {bad[:3]}"
            done.append(f"{space}: trains")
        else:
            try:
                resolve(cfg)
            except ValueError:
                done.append(f"{space}: refused (undeclared)")
                continue
            raise AssertionError(f"{space} space is not declared in spaces={cls.spaces} but a config with it resolves")
    return ", ".join(done)


def check_training(name: str, dataset: str, options: dict[str, Any]) -> list[Check]:
    """One epoch (finite metrics), the same seed twice (same rows), and a run restored from its epoch-1 checkpoint."""
    from .trainer import Trainer

    cfg = _config(name, dataset, options, None, epochs=2, steps=3)
    state: dict[str, Any] = {}

    def straight() -> str:
        state["a"] = list(Trainer(cfg).epochs())
        bad = [k for k, v in _rows(state["a"]).items() if not math.isfinite(v)]
        assert not bad, f"non-finite metrics {bad[:3]}"
        return f"2 epochs of {dataset}: {len(_rows(state['a']))} finite metric values"

    def resumed() -> str:
        first = Trainer(cfg)
        it = first.epochs()
        b1 = next(it)
        buf = io.BytesIO()
        torch.save(first.state_dict(), buf)
        buf.seek(0)
        second = Trainer(cfg)
        second.load_state_dict(torch.load(buf, weights_only=True))
        state["b"] = [b1] + list(second.epochs())
        return "ok"

    out = [_guard(f"one epoch on {dataset}", straight)]
    if not out[0].ok:
        return out
    out.append(_guard("trainer checkpoint/restore", resumed))
    if not out[1].ok:
        return out
    a, b = _rows(state["a"]), _rows(state["b"])

    def same(epoch: int) -> str:
        ka = {k: v for k, v in a.items() if k[0] == epoch}
        kb = {k: v for k, v in b.items() if k[0] == epoch}
        differ = sorted(k for k in ka if ka[k] != kb.get(k))
        assert ka.keys() == kb.keys() and not differ, f"epoch {epoch} rows differ: {differ[:3]}"
        return f"epoch {epoch}: {len(ka)} identical metric values"

    out[1] = _guard("trainer checkpoint/restore", lambda: same(2) + " after restoring epoch 1")
    out.insert(1, _guard("seeded training determinism", lambda: same(1) + " from two runs with seed 3"))
    return out


def check_method(name: str, train: bool = True, dataset: str | None = None,
                 options: dict[str, Any] | None = None) -> list[Check]:
    """Every property of a registered method (``ValueError`` for an unknown name)."""
    cls = weighting.get(name)
    ds, opts = BENCHMARK if dataset is None else (dataset, options or {})
    checks = [
        _guard("hyperparameters", lambda: check_hparams(cls)),
        _guard("shapes and finiteness", lambda: check_shapes(name)),
        _guard("seeded determinism", lambda: check_determinism(name)),
        _guard("checkpoint/restore", lambda: check_restore(name)),
        _guard("scale convention", lambda: check_scale(name)),
        _guard("own objective's gradients", lambda: check_objective_grads(name)),
        _guard("zero or duplicated task", lambda: check_degenerate(name)),
        _guard("declared architectures and spaces", lambda: check_declarations(name)),
    ]
    if train:
        checks.append(_guard("declared spaces", lambda: check_spaces(name, ds, opts)))
        checks += check_training(name, ds, opts)
    return checks


def report(name: str, checks: list[Check]) -> str:
    lines = [f"check-method {name} ({weighting.family(name)}; {weighting.origin(name)})"]
    for c in checks:
        lines.append(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed}/{len(checks)} properties hold" + (f"; {failed} FAILED" if failed else ""))
    return "\n".join(lines)


__all__ = ["Check", "check_method", "report"]
