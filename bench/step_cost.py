"""Step cost of every method relative to EW and to a per-task-backward reference, with intervals.

    python bench/step_cost.py [--datasets multi_digits digit_attributes scenes] [--methods ew rlw ...]
                              [--steps 20] [--repeats 4] [--max-rounds 40] [--target 0.004] [--budget 540]
                              [--force-paths mgda ...] [--clock cpu|wall] [--skip moml auto_lambda stl famo]

For each benchmark, every method (gradient methods in each space they support)
trains on the same pre-built batches in this process; steps are timed after a
warm-up, methods interleaved step by step (every method takes step i before any
takes step i+1) so that drift of the machine's speed hits them alike. Each method steps in a group
with its companions: for a gradient method :class:`PerTaskBackward` (a plain per-task-backward
step written here, the way other libraries take it), in parameter space also the bare forward + T
backward passes (its own copy) and, for ``--force-paths`` methods, the trainer with each Jacobian
path forced; for a loss weighting an EW trainer. Within a group the order rotates every step (no
member always runs first). Every ratio against a companion is paired: the median of the per-step
ratios of the two, taken right next to each other, with a 95 % sign-test (order-statistic) interval
of that median over the paired steps, printed as ``1.003 [0.998, 1.007]``; the "v" column says
whether the per-task ratio's upper end is at or below 1.00 (``<=``), the interval holds 1.00 (``~``)
or its lower end is above 1.00 (``>``). Rounds of ``--steps`` steps run until every interval's
half-width (log scale) is at most ``--target`` (default 0.004, +-0.4 %), after at least ``--repeats``
rounds, at most ``--max-rounds`` rounds; measuring stops anyway (mid-round) after ``--budget`` seconds
per benchmark (scenes, ~25 s a step of every method, gets ~20 paired steps in 540 s).

Also printed: a method's step time (the fastest of the rounds' medians), its ratio to EW's (those
unpaired medians, which a shared machine's load moves), for gradient methods the share of the step
spent in the method's ``direction`` (its solver), "x best path" (``--force-paths``: the trainer's own
choice against the slower-relative forced path, i.e. the larger paired ratio; at most 1 means at
most the best path), the Jacobian path the trainer measured fastest (the measured median
milliseconds of the batched (b) and looped (l) paths and the number of measured calls), and a
summary per benchmark: the per-task verdicts counted and each ratio's highest upper end. Warm-up
runs until every trainer's Jacobian path is chosen (the measured calls are not timed).
``--clock cpu`` (default) times the process's CPU time (one torch thread: the step's work, not
the time other jobs of a shared machine held the cores); ``--clock wall`` the wall clock. The
default leaves out the methods that take extra passes by design (MOML, Auto-Lambda: a bi-level
lookahead; STL: T models; FAMO: a second forward); ``--skip`` alone keeps them. The load average is
printed before and after. Also the wall time of one full EW epoch of ``multi_digits``
(``--no-epoch`` leaves it out). ``--ref-optimizer torch`` (default): the reference and the bare passes
step with the optimiser as torch builds it by default (what other libraries run: on CPU a loop over
the parameters); ``litmus``: with the trainer's (CPU: multi-tensor, the same updates bit for bit),
which compares the step's machinery alone.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time
from statistics import median
from typing import Any

import math

import torch
from scipy.stats import binom

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
    no method, the bare forward + T backward passes (the direction is the plain sum). Its optimiser is
    the trainer's (``ref_optimizer="litmus"``) or, by default, the same one as torch builds it by default
    (``"torch"``: ``torch.optim.Adam(params, lr)``, as LibMTL does; on CPU torch then loops over the
    parameters, where litmus takes the multi-tensor path: the same updates bit for bit)."""

    def __init__(self, tr: Trainer, method: Any | None, ref_optimizer: str = "torch") -> None:
        self.model = copy.deepcopy(tr.model)
        self.method = copy.deepcopy(method)
        self.bench, self.tasks, self.space = tr.bench, tr.tasks, tr.cfg.space or "param"
        self.shared = [p for p in self.model.shared_parameters() if p.requires_grad]
        self.opt = build_optimizer(tr.cfg, self.model, [])
        if ref_optimizer == "torch":
            for g in self.opt.param_groups:
                g["foreach"] = None  # torch's default choice

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

#: confidence level of the intervals of the paired ratios
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A ratio (the median of paired per-step ratios) and its distribution-free interval (None: unpaired)."""

    ratio: float
    lo: float | None = None
    hi: float | None = None
    n: int = 0

    @property
    def half_width(self) -> float:
        """Half the interval's width on the log scale (~ relative: 0.005 is +-0.5 %); inf without one."""
        if self.lo is None or self.hi is None:
            return math.inf
        return (math.log(self.hi) - math.log(self.lo)) / 2

    def verdict(self, bound: float = 1.0) -> str:
        """Against ``bound``: below (upper end <= bound), above (lower end > bound), or indistinguishable."""
        if self.lo is None or self.hi is None:
            return ""
        return "<=" if self.hi <= bound else (">" if self.lo > bound else "~")

    def __str__(self) -> str:
        if self.lo is None or self.hi is None:
            return f"{self.ratio:.3f}"
        return f"{self.ratio:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def ratio_interval(a: list[float], b: list[float], level: float = LEVEL) -> Interval:
    """The median of the paired per-step ratios ``a_i / b_i`` and the sign-test (order-statistic)
    confidence interval of that median: with ``j`` the ``(1 - level) / 2`` quantile of Binomial(n, 1/2),
    the ``j``-th smallest and ``j``-th largest ratios cover the median ratio with probability >= ``level``
    for independent pairs, whatever their distribution (Hollander & Wolfe, Nonparametric Statistical
    Methods, Sec. 3.6). The ratios are taken on the log scale, where a ratio and its inverse are
    symmetric; the pairing cancels what the pair shares (the machine's load of the moment)."""
    logs = sorted(math.log(x / y) for x, y in zip(a, b))
    n = len(logs)
    mid = median(logs)
    j = int(binom.ppf((1 - level) / 2, n, 0.5))  # P(Bin(n, 1/2) <= j - 1) <= (1 - level) / 2
    if j < 1:
        return Interval(math.exp(mid), n=n)
    return Interval(math.exp(mid), math.exp(logs[j - 1]), math.exp(logs[n - j]), n)


def measure(dataset: str, methods: list[str] | None, steps: int, repeats: int, warmup: int = 5,
            force_paths: list[str] | None = None, clock: Any = time.perf_counter, target: float = 0.004,
            max_rounds: int = 40, budget: float = 540.0, ref_optimizer: str = "torch") -> list[dict[str, Any]]:
    """Rows per method; at least ``repeats`` rounds of ``steps`` steps, then more rounds until every
    paired ratio's interval has a half-width (log scale) of at most ``target`` or ``max_rounds`` rounds;
    measuring (after warm-up) stops anyway, mid-round, after ``budget`` seconds."""
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
                refs[key] = PerTaskBackward(tr, tr.grad_method, ref_optimizer)
            timers[key] = Timed(tr.grad_method, clock)
    if ("ew", None, None) not in trainers:
        raise SystemExit("step_cost: the method list must include ew (the reference of the ratios)")
    bare = PerTaskBackward(trainers[("ew", None, None)], None, ref_optimizer)
    data = list(batches(splits.train, trainers[("ew", None, None)].cfg.batch_size, torch.Generator().manual_seed(0),
                        torch.device("cpu")))
    # each method's companions (its reference, its bare passes, its forced paths, its EW twin) step right
    # next to it: "x per-task" is the median of the per-step ratios of neighbours in time, which a shared
    # machine's changing load hits alike; within a group the order rotates every step, so that no member
    # always runs first (caches, the allocator's state) and an order effect cancels
    groups: list[dict[Any, Any]] = []
    for k, tr in trainers.items():
        if k[2] is not None:
            continue
        g: dict[Any, Any] = {k: tr}
        if k in refs:
            g[("ref", k)] = refs[k]
        for f in CANDIDATES:  # the forced Jacobian paths next to it too
            if (k[0], k[1], f) in trainers:
                g[(k[0], k[1], f)] = trainers[(k[0], k[1], f)]
        if k[1] == "param":  # its own bare passes next to it: "x fwd+T bwd" paired as well
            g[("bare", k)] = PerTaskBackward(tr, None, ref_optimizer)
        if k[1] is None and k[0] != "ew":  # loss weightings: an EW trainer next to each, "x EW" paired
            g[("ew", k)] = Trainer(dataclasses.replace(trainers[("ew", None, None)].cfg), splits=splits)
        groups.append(g)
    groups.append({"bare": bare})
    steppers = {k: s for g in groups for k, s in g.items()}
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

    def paired(key: Any, other: Any) -> Interval:
        return ratio_interval([a for r in times[key] for a in r], [b for r in times[other] for b in r])

    def pairs() -> dict[tuple[Any, Any], Interval]:
        out = {}
        for key in trainers:
            for other in (("ref", key), ("ew", key), ("bare", key)) + tuple((key[0], key[1], f) for f in CANDIDATES):
                if other in times and other != key and key[2] is None:
                    out[(key, other)] = paired(key, other)
        return out

    # interleaved step by step, so that drift of the machine's speed hits every method alike; rounds of
    # ``steps`` steps until every paired ratio's interval is narrow enough, or the budget is spent (checked
    # after every step: on scenes a step of every method takes ~25 s)
    started = time.perf_counter()
    n_steps = 0
    out_of_time = False
    while not out_of_time:
        for key in times:
            times[key].append([])
        for _ in range(steps):
            i = n_steps
            for g in groups:
                members = list(g.items())
                r = i % len(members)
                for key, s in members[r:] + members[:r]:
                    timer = timers.get(key)
                    before = timer.seconds if timer else 0.0
                    t0 = clock()
                    step(key, s, i)
                    times[key][-1].append(clock() - t0)
                    if timer:
                        solver[key] += timer.seconds - before
            n_steps += 1
            if time.perf_counter() - started > budget:
                out_of_time = True
                break
        rounds = len(times["bare"])
        if rounds >= max_rounds or (rounds >= repeats and max((iv.half_width for iv in pairs().values()),
                                                                 default=0.0) <= target):
            break

    def fastest_round(key: Any) -> float:  # a cut-short last round counts only if it is the only one
        full = [r for r in times[key] if len(r) == steps] or times[key]
        return min(median(r) for r in full)

    ew = fastest_round(("ew", None, None))
    bare_med = fastest_round("bare")
    iv = pairs()
    for key, tr in trainers.items():
        med = fastest_round(key)
        ref = fastest_round(("ref", key)) if ("ref", key) in times else None
        forced = [iv[(key, (key[0], key[1], f))] for f in CANDIDATES if (key, (key[0], key[1], f)) in iv]
        paths = sorted({f"{v['path']} (b {v.get('batched_ms', '-')} / l {v.get('looped_ms', '-')} ms, {v['calls']} calls)"
                        for v in tr.jacobian.summary().values()})
        total = sum(sum(r) for r in times[key])
        label = key[0] if key[2] is None else f"{key[0]} [{key[2]}]"
        rows.append({"dataset": dataset, "method": label, "space": key[1] or "-", "step_ms": 1000 * med,
                     "ratio": med / ew, "solver_share": solver[key] / total if key in timers else None,
                     "ref_ms": 1000 * ref if ref else None, "x_ref": iv.get((key, ("ref", key))),
                     "x_ew": iv.get((key, ("ew", key))),
                     "x_bare": iv.get((key, ("bare", key))) or
                     (Interval(med / bare_med) if key[1] == "param" else None),  # forced paths: unpaired
                     "x_best": max(forced, key=lambda v: v.ratio) if forced else None,
                     "path": ",".join(paths) or "-", "steps": n_steps, "rounds": len(times[key])})
    rows.append({"dataset": dataset, "method": "(fwd + T bwd)", "space": "param", "step_ms": 1000 * bare_med,
                 "ratio": bare_med / ew, "solver_share": None, "ref_ms": None, "x_ref": None, "x_ew": None,
                 "x_bare": Interval(1.0), "x_best": None, "path": "-", "steps": n_steps, "rounds": len(times["bare"])})
    return rows


def epoch_time(dataset: str = "multi_digits") -> float:
    tr = Trainer(TrainConfig(dataset=dataset, method="ew", epochs=1, seed=0))
    t0 = time.perf_counter()
    tr.train_epoch()
    return time.perf_counter() - t0


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The target's lines: each ratio's worst interval end, and the per-task verdicts counted."""
    def worst(col: str, which: Any) -> str:
        got = [(r[col], r) for r in rows if which(r) and r[col] is not None and r[col].hi is not None]
        if not got:
            return "-"
        iv, r = max(got, key=lambda x: x[0].hi)
        return f"highest upper end {iv.hi:.3f} ({r['method']} {r['space']}: {iv})"

    lines = []
    for space in ("param", "rep"):
        ivs = [r["x_ref"] for r in rows if r["space"] == space and r["x_ref"] is not None]
        if ivs:
            counts = {v: sum(iv.verdict() == v for iv in ivs) for v in ("<=", "~", ">")}
            lines.append(f"{space} x per-task: {len(ivs)} methods, upper end <= 1.00: {counts['<=']}, "
                         f"interval holds 1.00: {counts['~']}, lower end > 1.00: {counts['>']}; "
                         f"median ratio {median(iv.ratio for iv in ivs):.3f}; "
                         + worst("x_ref", lambda r, s=space: r["space"] == s))
    lines.append("param x fwd+T bwd: " + worst("x_bare", lambda r: r["space"] == "param" and "[" not in r["method"]))
    lines.append("x best path: " + worst("x_best", lambda r: True))
    lines.append("loss weightings x EW paired: " + worst("x_ew", lambda r: r["space"] == "-"))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(BENCH_OPTIONS))
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=20, help="steps per round")
    ap.add_argument("--repeats", type=int, default=4, help="rounds at least")
    ap.add_argument("--max-rounds", type=int, default=40, help="rounds at most")
    ap.add_argument("--target", type=float, default=0.004,
                    help="stop adding rounds once every paired ratio's 95%% interval is within this half-width "
                         "(log scale: 0.004 is +-0.4%%)")
    ap.add_argument("--budget", type=float, default=540.0,
                    help="seconds of measuring per dataset after which it stops (mid-round)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ref-optimizer", choices=("torch", "litmus"), default="torch",
                    help="the per-task reference's (and the bare passes') optimiser: as torch builds it by default "
                         "(what other libraries run; on CPU a per-parameter loop) or litmus's (CPU: multi-tensor); "
                         "'litmus' compares the step's machinery alone")
    ap.add_argument("--force-paths", nargs="*", default=["mgda"],
                    help="parameter-space methods to run also with each Jacobian path forced")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                    help="the process's CPU time (default: the step's work, robust on a shared, loaded machine) "
                         "or the wall clock")
    ap.add_argument("--no-epoch", action="store_true", help="leave out the full-epoch wall time")
    ap.add_argument("--skip", nargs="*", default=["moml", "auto_lambda", "stl", "famo"],
                    help="methods to leave out of the default list (default: the ones with extra passes by "
                         "design: bi-level lookahead, T models, FAMO's second forward; --skip alone keeps all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    methods = [m for m in (args.methods or weighting.names()) if m not in args.skip]
    print(f"torch {torch.__version__}, {args.threads} thread(s), rounds of {args.steps} steps, at least {args.repeats}, "
          f"until every 95% interval's half-width <= {args.target} or {args.max_rounds} rounds or {args.budget:.0f} s; "
          f"{args.clock} clock, reference optimiser {args.ref_optimizer}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for ds in args.datasets:
        t0 = time.perf_counter()
        rows = measure(ds, methods, args.steps, args.repeats, force_paths=args.force_paths, clock=clock,
                       target=args.target, max_rounds=args.max_rounds, budget=args.budget,
                       ref_optimizer=args.ref_optimizer)
        print(f"\n## {ds} ({rows[-1]['steps']} paired steps in {rows[-1]['rounds']} rounds, "
              f"{time.perf_counter() - t0:.0f} s)\n\n"
              "Ratios: median of the paired per-step ratios [95% sign-test interval]; v: <= upper end at or "
              "below 1.00, ~ interval holds 1.00, > lower end above 1.00.\n\n"
              "| method | space | step ms | x EW | x EW paired | solver share | per-task-backward ms "
              "| x per-task | v | x fwd+T bwd | x best path | Jacobian path |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
        for r in sorted(rows, key=lambda r: (r["space"] != "-", r["space"], r["ratio"])):
            share = f"{100 * r['solver_share']:.0f}%" if r["solver_share"] is not None else ""
            ref = f"{r['ref_ms']:.2f}" if r["ref_ms"] is not None else ""
            cell = {c: (str(r[c]) if r[c] is not None else "") for c in ("x_ref", "x_bare", "x_best", "x_ew")}
            v = r["x_ref"].verdict() if r["x_ref"] is not None else ""
            print(f"| {r['method']} | {r['space']} | {r['step_ms']:.2f} | {r['ratio']:.3f} | {cell['x_ew']} | {share} "
                  f"| {ref} | {cell['x_ref']} | {v} | {cell['x_bare']} | {cell['x_best']} | {r['path']} |")
        print()
        for line in summary(rows):
            print(f"* {line}")
        print(f"\nload average after {ds}: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.no_epoch:
        torch.set_num_threads(2)
        print(f"\none full EW epoch of multi_digits (default size, 2 threads): {epoch_time():.2f} s")


if __name__ == "__main__":
    main()
