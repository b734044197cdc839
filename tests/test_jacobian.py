"""The Jacobian paths (trainables/jacobian.py): the measured choice, the flat ``[T, P]`` matrix, and
the trainer's fused finiteness check of a direction (trainables/divergence.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables import divergence, jacobian
from trainables.config import TrainConfig
from trainables.trainer import Diverged, Trainer


def _model_and_losses(seed: int = 0) -> tuple[list[nn.Parameter], list[torch.Tensor]]:
    """Two task losses over a small shared net; ``unused`` is a parameter no loss touches."""
    gen = torch.Generator().manual_seed(seed)
    w1 = nn.Parameter(torch.randn(5, 4, generator=gen))
    b1 = nn.Parameter(torch.randn(5, generator=gen))
    unused = nn.Parameter(torch.randn(3, generator=gen))
    only_second = nn.Parameter(torch.randn(5, generator=gen))
    x = torch.randn(8, 4, generator=gen)
    h = torch.tanh(x @ w1.T + b1)
    losses = [h.pow(2).mean(), (h * only_second).sum().sin()]
    return [w1, b1, unused, only_second], losses


@pytest.mark.parametrize("name", ["batched", "looped"])
def test_flat_and_summed_equal_the_stacked_gradients(name: str) -> None:
    params, losses = _model_and_losses()
    per_row = jacobian.ROW_CANDIDATES[name](losses, params)
    want_rows = [torch.autograd.grad(l, params, retain_graph=True, allow_unused=True) for l in losses]
    want = torch.stack([torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                   for g, p in zip(gs, params)]) for gs in want_rows])
    got = jacobian.flat(per_row, params)
    assert got.shape == (2, 20 + 5 + 3 + 5)
    torch.testing.assert_close(got, want)  # the batched pass may round differently from separate passes
    assert torch.equal(got[:, 20 + 5:20 + 5 + 3], torch.zeros(2, 3))  # the unused parameter: zero columns
    # the same numbers as the candidate's per-input results, stacked and concatenated (the old way): one copy, exact
    stacked = jacobian.CANDIDATES[name](losses, params)
    assert stacked[2] is None
    assert torch.equal(got, torch.cat([s.reshape(2, -1) for s in jacobian.dense(stacked, params, 2)], 1))
    assert jacobian.summed(per_row, 2) is None
    assert torch.equal(jacobian.summed(per_row, 0), stacked[0].sum(0))
    torch.testing.assert_close(jacobian.summed(per_row, 0), want_rows[0][0] + want_rows[1][0])
    assert torch.equal(jacobian.summed(per_row, 3), stacked[3].sum(0))
    if name == "looped":  # one row uses it: that row's gradient itself
        assert torch.equal(jacobian.summed(per_row, 3), want_rows[1][3])


class _Scripted:
    """Candidates that advance a fake clock by scripted durations, then do the real work (both the
    looped passes, so that their results are identical and the faster may be kept)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, durations: dict[str, list[float]]) -> None:
        self.now = 0.0
        self.calls = dict.fromkeys(durations, 0)
        for name, ds in durations.items():
            real = jacobian.looped_rows

            def run(outputs, inputs, rows=None, _name=name, _ds=ds, _real=real):
                self.now += _ds[self.calls[_name]]
                self.calls[_name] += 1
                return _real(outputs, inputs, rows)

            monkeypatch.setitem(jacobian.ROW_CANDIDATES, name, run)

    def clock(self) -> float:
        return self.now


def _call(jac: jacobian.Jacobian) -> dict:
    params, losses = _model_and_losses()
    jac.rows(losses, params)
    (entry,) = jac.summary().values()
    return entry


def test_the_choice_is_made_once_the_times_separate(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Scripted(monkeypatch, {"batched": [2.0] * 9, "looped": [1.0] * 9})
    jac = jacobian.Jacobian(trials=3, max_trials=9, clock=fake.clock)
    assert _call(jac)["path"] == "measuring"
    assert _call(jac)["path"] == "measuring"
    entry = _call(jac)
    assert entry["path"] == "looped" and entry["calls"] == 3 and entry["identical"] is True
    assert entry["batched_ms"] == 2000.0 and entry["looped_ms"] == 1000.0
    _call(jac)
    assert fake.calls == {"batched": 3, "looped": 4}  # chosen: the other path is no longer run
    assert jac.settled()


def test_overlapping_times_are_measured_until_max_trials_then_the_median_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    # one burst made a batched call look fast: the samples overlap, so the choice waits for more calls
    fake = _Scripted(monkeypatch, {"batched": [2.0, 0.5] + [2.0] * 7, "looped": [1.0] * 9})
    jac = jacobian.Jacobian(trials=3, max_trials=9, clock=fake.clock)
    for _ in range(8):
        assert _call(jac)["path"] == "measuring"
    assert not jac.settled()
    entry = _call(jac)
    assert entry["path"] == "looped" and entry["calls"] == 9
    assert jac.settled()


def test_a_shared_choice_is_kept_for_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later shared Jacobian of the same shapes takes the process's choice without measuring; an
    unshared one, or one of other shapes, measures."""
    monkeypatch.setattr(jacobian, "_PROCESS_CHOICES", {})
    fake = _Scripted(monkeypatch, {"batched": [2.0] * 20, "looped": [1.0] * 20})
    first = jacobian.Jacobian(clock=fake.clock, shared=True)
    for _ in range(3):
        _call(first)
    assert first.summary()[next(iter(first.summary()))]["measured"] is True
    second = jacobian.Jacobian(clock=fake.clock, shared=True)
    entry = _call(second)
    assert entry["path"] == "looped" and entry["measured"] is False and entry["calls"] == 3
    assert entry["batched_ms"] == 2000.0 and entry["identical"] is True
    assert fake.calls == {"batched": 3, "looped": 4}  # the second ran the chosen path only
    assert _call(jacobian.Jacobian(clock=fake.clock))["path"] == "measuring"  # not shared: measures
    params, losses = _model_and_losses()
    other = jacobian.Jacobian(clock=fake.clock, shared=True)
    other.rows(losses, params[:2])  # other inputs: measured afresh
    assert next(iter(other.summary().values()))["path"] == "measuring"


def test_the_clock_is_the_threads_cpu_time_on_one_cpu_thread() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        jac = jacobian.Jacobian()
        assert _call(jac)["clock"] == "thread cpu"
        torch.set_num_threads(2)
        jac = jacobian.Jacobian()
        assert _call(jac)["clock"] == "wall"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_all_finite_is_exact(dtype: torch.dtype) -> None:
    big = torch.finfo(dtype).max
    x = torch.full((1000,), big, dtype=dtype)  # finite, but its sum overflows
    assert divergence.all_finite(x)
    assert divergence.all_finite(torch.zeros(0, dtype=dtype))
    for bad in (float("nan"), float("inf"), -float("inf")):
        for at in (0, 500, 999):
            y = x.clone()
            y[at] = bad
            assert not divergence.all_finite(y)
            assert not divergence.all_finite(y.reshape(10, 100))


def test_step_reason_compares_in_the_losses_dtype() -> None:
    """The limit is ``factor * first`` computed on the float32 tensor: a loss equal to it is not above it,
    the next float32 up is."""
    first = torch.tensor([0.1, 1.0])
    limit = (100.0 * first)[0]
    at = torch.stack([limit, torch.tensor(1.0)])
    above = torch.stack([torch.nextafter(limit, torch.tensor(float("inf"))), torch.tensor(1.0)])
    assert divergence.step_reason(at, first, 100.0) is None
    assert "above 100" in divergence.step_reason(above, first, 100.0)
    assert divergence.step_reason(torch.tensor([float("inf"), 1.0]), first, 100.0) == "non-finite loss"


def test_a_non_finite_direction_stops_the_trial_and_a_huge_finite_one_does_not() -> None:
    cfg = TrainConfig(dataset="multi_digits", method="mgda", space="param", epochs=1, batch_size=16, seed=0,
                      dataset_options={"n_train": 32, "n_val": 8, "n_test": 8}, num_threads=1)
    tr = Trainer(cfg)
    from trainables.batching import batches

    x, y = next(iter(batches(tr.splits.train, 16, torch.Generator().manual_seed(0), torch.device("cpu"))))
    real = tr.grad_method.direction

    def huge(jac, losses):
        return torch.full_like(real(jac, losses), 3e38)

    tr.grad_method.direction = huge
    tr.optimizer.step = lambda *a, **k: None
    tr.train_step((x, y), 1, 1)  # finite: no divergence, though the sum of the entries overflows

    def one_inf(jac, losses):
        d = real(jac, losses)
        d[-1] = float("inf")
        return d

    tr.grad_method.direction = one_inf
    with pytest.raises(Diverged, match="direction"):
        tr.train_step((x, y), 1, 2)


def test_steps_reuse_the_freed_heap_pages() -> None:
    """trainables/heap.py: once a trainer exists, a parameter-space step on multi_digits (batch 128)
    faults (almost) no fresh pages in; without the raised trim threshold it took 600-1,000 per step."""
    import resource

    from trainables import heap
    from trainables.batching import batches

    tr = Trainer(TrainConfig(dataset="multi_digits", method="mgda", space="param", epochs=1, seed=0, num_threads=1,
                             dataset_options={"n_train": 1024, "n_val": 8, "n_test": 8}))
    assert heap.keep_freed_heap() is True  # glibc Linux (the CI's and this machine's)
    data = list(batches(tr.splits.train, tr.cfg.batch_size, torch.Generator().manual_seed(0), torch.device("cpu")))
    faults = []
    for i, batch in enumerate(data[:8]):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        tr.train_step(batch, 1, i + 1)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert sorted(faults[4:])[1] < 50, faults
