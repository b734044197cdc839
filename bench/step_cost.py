"""Step cost of every method relative to EW on each bundled benchmark.

    python bench/step_cost.py [--datasets multi_digits scenes] [--steps 40] [--repeats 5] [--methods ew rlw ...]
                              [--force-paths mgda ...]

For each benchmark, every method (gradient methods in each space they support)
trains on the same pre-built batches in this process; steps are timed after a
warm-up, methods interleaved step by step (every method takes step i before any
takes step i+1) so that drift of the machine's speed hits them alike. A method's step time is
the fastest of the rounds' medians (``--repeats`` rounds of ``--steps`` steps: a burst of load
on the shared machine spoils a round, not the minimum). Printed: that step time, the ratio to EW's, and for
gradient methods the share of the step spent in the method's ``direction``
(its solver), and, for every gradient method, the ratio to :class:`PerTaskBackward` (a plain
per-task-backward step written here, the way other libraries take it; the median of the ratios of
each step to the reference's step taken right after it), the ratio to the bare
forward + T backward passes (parameter space; paired the same way, with its own copy stepping right
after the method) and the Jacobian path the trainer measured fastest. Each loss weighting also has
an EW trainer stepping right after it: "x EW paired" is the median of those per-step ratios (the
"x EW" column divides fastest-round medians, which a shared machine's load moves). Warm-up runs
until every trainer's Jacobian path is chosen (the measured calls are not timed).
``--clock cpu`` times the process's CPU time instead of the wall clock (one torch thread: the
step's work, not the time other jobs of a shared machine held the cores). ``--force-paths M ...``: parameter-space method ``M`` also runs with each Jacobian path forced
(rows ``M [batched]``, ``M [looped]``, stepping right after it), and its row shows the ratio of the
trainer's own choice to the faster of them ("x best path": the larger median per-step ratio). The
Jacobian path column shows the measured median milliseconds of the batched (b) and looped (l) paths
and the number of measured calls. The load average is printed before and after.
Also the wall time of one full EW epoch of ``multi_digits``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time
from statistics import median
from typing import Any

import torch

from trainables import weighting
from trainables.batching import batches
from trainables.config import TrainConfig
from trainables.optimizers import build_optimizer
from trainables.trainer import Trainer

BENCH_OPTIONS = {
    "multi_digits": {"n_train": 2048, "n_val": 8, "n_test": 8},
    "digit_attributes": {"n_train": 2048, "n_val": 8, "n_test": 8},
    "scenes": {"n_train": 256, "n_val": 4, "n_test": 4},
}



def variants(methods: list[str] | None) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for name in methods or weighting.names():
        cls = weighting.get(name)
        if cls.kind == "grad":
            out += [(name, s) for s in cls.spaces]
        else:
            out.append((name, None))
    return out


class Timed:
    """Wraps a gradient method's ``direction`` to accumulate the time spent in it."""

    def __init__(self, method: Any, clock: Any = time.perf_counter) -> None:
        self.inner = method.direction
        self.seconds = 0.0
        self.clock = clock
        method.direction = self

    def __call__(self, *args: Any) -> torch.Tensor:
        t0 = self.clock()
        out = self.inner(*args)
        self.seconds += self.clock() - t0
        return out


class PerTaskBackward:
    """The reference step of a gradient method, written the way other libraries take it (LibMTL's
    ``_compute_grad`` with ``mode='backward'``): one ``loss_t.backward(retain_graph=True)`` per task
    through the whole model, the shared gradients copied out into a ``[T, P]`` matrix after each;
    in rep space one backward per task from a detached copy of the representation, then
    ``rep.backward(direction)``. The heads keep the gradients of their own losses. ``method=None``:
    no method, the bare forward + T backward passes (the direction is the plain sum)."""

    def __init__(self, tr: Trainer, method: Any | None) -> None:
        self.model = copy.deepcopy(tr.model)
        self.method = copy.deepcopy(method)
        self.bench, self.tasks, self.space = tr.bench, tr.tasks, tr.cfg.space or "param"
        self.shared = [p for p in self.model.shared_parameters() if p.requires_grad]
        self.opt = build_optimizer(tr.cfg, self.model, [])

    def _direction(self, jac: torch.Tensor, losses: list[torch.Tensor]) -> torch.Tensor:
        if self.method is None:
            return jac.sum(0)
        return self.method.direction(jac, torch.stack(losses).detach())

    def step(self, batch: Any) -> None:
        x, y = batch
        self.opt.zero_grad(set_to_none=True)
        last = len(self.tasks) - 1
        rows = []
        if self.space == "param":
            out = self.model(x)
            losses = [self.bench.loss(t, out[t], y[t]) for t in self.tasks]
            for i, loss in enumerate(losses):
                loss.backward(retain_graph=i < last)
                rows.append(torch.cat([p.grad.reshape(-1) for p in self.shared]))
                for p in self.shared:
                    p.grad = None
            d = self._direction(torch.stack(rows), losses)
            offset = 0
            for p in self.shared:
                p.grad = d[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        else:
            rep = self.model.encode(x)
            leaf = rep.detach().requires_grad_(True)
            if self.method is not None:
                self.method.observe_rep(rep.detach())  # GradDrop's activation sign, as the trainer passes it
            out = self.model.decode(leaf, x)
            losses = [self.bench.loss(t, out[t], y[t]) for t in self.tasks]
            for i, loss in enumerate(losses):
                loss.backward(retain_graph=i < last)
                rows.append(leaf.grad.clone())
                leaf.grad = None
            rep.backward(self._direction(torch.stack(rows), losses))
        self.opt.step()


Key = tuple  # (method, space, forced Jacobian path or None)


def measure(dataset: str, methods: list[str] | None, steps: int, repeats: int, warmup: int = 5,
            force_paths: list[str] | None = None, clock: Any = time.perf_counter) -> list[dict[str, Any]]:
    from trainables.jacobian import CANDIDATES

    rows = []
    trainers: dict[Key, Trainer] = {}
    timers: dict[Key, Timed] = {}
    refs: dict[Key, PerTaskBackward] = {}
    splits = None
    todo = [(name, space, None) for name, space in variants(methods)]
    todo += [(name, "param", f) for name in force_paths or [] for f in CANDIDATES]
    for name, space, force in todo:
        cfg = TrainConfig(dataset=dataset, method=name, space=space, dataset_options=BENCH_OPTIONS[dataset], seed=0,
                          distribution="normal" if weighting.takes_distribution(name) else None)
        tr = Trainer(cfg, splits=splits)
        tr.jacobian.force = force
        splits = tr.splits
        key = (name, space, force)
        trainers[key] = tr
        if tr.grad_method is not None:
            if not tr.grad_method.transforms_rep and force is None:  # RotoGrad's rotations have no plain reference
                refs[key] = PerTaskBackward(tr, tr.grad_method)
            timers[key] = Timed(tr.grad_method, clock)
    if ("ew", None, None) not in trainers:
        raise SystemExit("step_cost: the method list must include ew (the reference of the ratios)")
    bare = PerTaskBackward(trainers[("ew", None, None)], None)
    data = list(batches(splits.train, trainers[("ew", None, None)].cfg.batch_size, torch.Generator().manual_seed(0),
                        torch.device("cpu")))
    # each method's reference steps right after it: "x per-task" is the median of the per-step ratios of
    # neighbours in time, which a shared machine's changing load hits alike
    steppers: dict[Any, Any] = {}
    for k, tr in trainers.items():
        if k[2] is not None:
            continue
        steppers[k] = tr
        if k in refs:
            steppers[("ref", k)] = refs[k]
        for f in CANDIDATES:  # the forced Jacobian paths next to it too
            if (k[0], k[1], f) in trainers:
                steppers[(k[0], k[1], f)] = trainers[(k[0], k[1], f)]
        if k[1] == "param":  # its own bare passes next to it: "x fwd+T bwd" paired as well
            steppers[("bare", k)] = PerTaskBackward(tr, None)
        if k[1] is None and k[0] != "ew":  # loss weightings: an EW trainer next to each, "x EW" paired
            steppers[("ew", k)] = Trainer(dataclasses.replace(trainers[("ew", None, None)].cfg), splits=splits)
    steppers["bare"] = bare
    times: dict[Any, list[list[float]]] = {k: [] for k in steppers}
    solver: dict[Key, float] = {k: 0.0 for k in trainers}

    def step(key: Any, s: Any, i: int) -> None:
        if isinstance(s, Trainer):
            s.train_step(data[i % len(data)], 1, i + 1)
        else:
            s.step(data[i % len(data)])

    for key, s in steppers.items():
        s.model.train()
        i = 0  # warm up, and past the Jacobian path's measurement (up to max_trials calls)
        while i < warmup or (isinstance(s, Trainer) and not s.jacobian.settled()):
            step(key, s, i)
            i += 1
    # interleaved step by step, so that drift of the machine's speed hits every method alike
    for _ in range(repeats):
        for key in times:
            times[key].append([])
        for i in range(steps):
            for key, s in steppers.items():
                timer = timers.get(key)
                before = timer.seconds if timer else 0.0
                t0 = clock()
                step(key, s, i)
                times[key][-1].append(clock() - t0)
                if timer:
                    solver[key] += timer.seconds - before

    def fastest_round(key: Any) -> float:
        return min(median(r) for r in times[key])

    def paired(key: Any, other: Any) -> float:
        return median(a / b for ra, rb in zip(times[key], times[other]) for a, b in zip(ra, rb))

    ew = fastest_round(("ew", None, None))
    bare_med = fastest_round("bare")
    for key, tr in trainers.items():
        med = fastest_round(key)
        ref = fastest_round(("ref", key)) if ("ref", key) in times else None
        forced = [paired(key, (key[0], key[1], f)) for f in CANDIDATES if (key[0], key[1], f) in trainers]
        paths = sorted({f"{v['path']} (b {v.get('batched_ms', '-')} / l {v.get('looped_ms', '-')} ms, {v['calls']} calls)"
                        for v in tr.jacobian.summary().values()})
        total = sum(sum(r) for r in times[key])
        label = key[0] if key[2] is None else f"{key[0]} [{key[2]}]"
        rows.append({"dataset": dataset, "method": label, "space": key[1] or "-", "step_ms": 1000 * med,
                     "ratio": med / ew, "solver_share": solver[key] / total if key in timers else None,
                     "ref_ms": 1000 * ref if ref else None, "x_ref": paired(key, ("ref", key)) if ref else None,
                     "x_ew": paired(key, ("ew", key)) if ("ew", key) in times else None,
                     "x_bare": paired(key, ("bare", key)) if ("bare", key) in times else
                     (med / bare_med if key[1] == "param" else None),  # forced paths: unpaired
                     "x_best": max(forced) if forced and key[2] is None else None,
                     "path": ",".join(paths) or "-"})
    rows.append({"dataset": dataset, "method": "(fwd + T bwd)", "space": "param", "step_ms": 1000 * bare_med,
                 "ratio": bare_med / ew, "solver_share": None, "ref_ms": None, "x_ref": None, "x_ew": None, "x_bare": 1.0,
                 "x_best": None, "path": "-"})
    return rows


def epoch_time(dataset: str = "multi_digits") -> float:
    tr = Trainer(TrainConfig(dataset=dataset, method="ew", epochs=1, seed=0))
    t0 = time.perf_counter()
    tr.train_epoch()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(BENCH_OPTIONS))
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--force-paths", nargs="*", default=[],
                    help="parameter-space methods to run also with each Jacobian path forced")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or the process's CPU time (a shared, loaded machine)")
    ap.add_argument("--no-epoch", action="store_true", help="leave out the full-epoch wall time")
    ap.add_argument("--skip", nargs="*", default=[], help="methods to leave out of the default list")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    methods = [m for m in (args.methods or weighting.names()) if m not in args.skip]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps x {args.repeats} rounds per method, "
          f"{args.clock} clock; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for ds in args.datasets:
        rows = measure(ds, methods, args.steps, args.repeats, force_paths=args.force_paths, clock=clock)
        print(f"\n## {ds}\n\n| method | space | step ms | x EW | x EW paired | solver share | per-task-backward ms "
              "| x per-task | x fwd+T bwd | x best path | Jacobian path |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in sorted(rows, key=lambda r: (r["space"] != "-", r["space"], r["ratio"])):
            share = f"{100 * r['solver_share']:.0f}%" if r["solver_share"] is not None else ""
            ref = f"{r['ref_ms']:.2f}" if r["ref_ms"] is not None else ""
            xref = f"{r['x_ref']:.3f}" if r["x_ref"] is not None else ""
            xbare = f"{r['x_bare']:.3f}" if r["x_bare"] is not None else ""
            xbest = f"{r['x_best']:.3f}" if r["x_best"] is not None else ""
            xew = f"{r['x_ew']:.3f}" if r["x_ew"] is not None else ""
            print(f"| {r['method']} | {r['space']} | {r['step_ms']:.2f} | {r['ratio']:.3f} | {xew} | {share} | {ref} | {xref} "
                  f"| {xbare} | {xbest} | {r['path']} |")
        print(f"\nload average after {ds}: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.no_epoch:
        torch.set_num_threads(2)
        print(f"\none full EW epoch of multi_digits (default size, 2 threads): {epoch_time():.2f} s")


if __name__ == "__main__":
    main()
