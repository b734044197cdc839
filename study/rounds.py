"""The sequential final stage: seeds in rounds, only where a verdict is still open.

``final.seeds: {start: 5, step: 5, max: 30, until: decided}`` runs ``start``
shared seeds for every cell (dataset x arch x method variant), then, round by
round, ``step`` more seeds for the cells that still have an open comparison
(each variant against RLW and against the spec's baseline, as in the run
summary), until every comparison is decided or has ``max`` seeds. Seeds are
the same for all cells of a round, so comparisons stay paired; a baseline's
cell gets the seeds its open comparisons need.

After a round's last trial, the decisions of that round (analysis/sequential.py:
group-sequential boundaries planned before any data) are written to
``<store>/decisions/<study>.parquet`` atomically. A resumed study reads them
and continues in the round where it stopped with the same decisions: they are
never recomputed from a partial round.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.schema import Stage, Status
from analysis.sequential import (DECISION_SCHEMA, Design, DesignError, State, check_sequential_design, decide,
                                 decisions_path, latest_decisions, load_decisions)

from .driver import NO_MORE_JOBS, Outcome
from .final import pending
from .plan import Job
from .spec import Spec

@dataclass(frozen=True)
class Comparison:
    dataset: str
    arch: str
    variant: str
    against: str


def variant(method: str, distribution: str | None) -> str:
    """The analysis's variant name (``rlw:normal``)."""
    return f"{method}:{distribution}" if distribution else method


def against_variants(spec: Spec) -> list[str]:
    """What every variant is compared with: RLW (its first distribution) if the spec has it, and the baseline."""
    out = []
    for m in spec.methods:
        if m.name == "rlw":
            out.append(variant("rlw", m.distributions[0]))
    base = next(m for m in spec.methods if m.name == spec.baseline)
    out.append(variant(base.name, base.distributions[0]))
    return list(dict.fromkeys(out))


def comparisons(spec: Spec) -> list[Comparison]:
    """Every comparison of the family, in a fixed order."""
    variants = [variant(m.name, d) for m in spec.methods for d in m.distributions]
    return [Comparison(ds.name, arch, v, a) for ds in spec.datasets for arch in spec.archs
            for a in against_variants(spec) for v in variants if v != a]


def design(spec: Spec) -> Design:
    """The spec's sequential design with its family size (raises DesignError naming the field)."""
    s = spec.sequential
    return check_sequential_design(s["start"], s["step"], s["max"], s["until"], alpha=s["alpha"],
                        family=len(comparisons(spec)), spending=s["spending"])


def _write_decisions(root: Path, study: str, frame: pd.DataFrame) -> None:
    """Atomic write of a study's decisions (temporary file + rename): a kill leaves the old or the new file."""
    path = decisions_path(root, study)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame[DECISION_SCHEMA.names], schema=DECISION_SCHEMA, preserve_index=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def open_after(decisions: pd.DataFrame, family: list[Comparison]) -> tuple[int, list[Comparison]]:
    """Rounds already decided and the comparisons still open after them."""
    if decisions.empty:
        return 0, list(family)
    last = int(decisions["round"].max())
    latest = latest_decisions(decisions)
    still = {(r.dataset, r.arch, r.variant, r.against) for r in latest.itertuples() if r.state == State.CONTINUE.value}
    return last, [c for c in family if (c.dataset, c.arch, c.variant, c.against) in still]


def cells_of(open_: list[Comparison]) -> set[tuple[str, str, str]]:
    """Cells that need the next round's seeds: both sides of every open comparison."""
    return {(c.dataset, c.arch, v) for c in open_ for v in (c.variant, c.against)}


def paired_differences(store_root: Path, spec: Spec, seeds: list[int], family: list[Comparison]
                       ) -> dict[Comparison, tuple[np.ndarray, int]]:
    """Per comparison: per-seed Delta-m differences (variant - against) on ``seeds`` and the number of
    failed or diverged seeds. A seed whose trial failed or diverged counts as the worst Delta-m of its
    cell, so that blowing up never helps a method; a cell with no completed seed gives no differences."""
    from analysis.delta_m import per_seed
    from analysis.select import select
    from analysis.store import load, load_trials

    frame = load(store_root, study=spec.name, stage=str(Stage.FINAL))
    frame = frame[frame["seed"].isin(seeds)]
    sel = select(frame, split="test", epoch=spec.epoch, baseline=spec.baseline)
    ps = per_seed(sel, baseline=spec.baseline)
    trials = load_trials(store_root, study=spec.name, stage=str(Stage.FINAL))
    trials = trials[trials["seed"].isin(seeds)]
    bad = trials[trials["status"].isin([str(Status.FAILED), str(Status.DIVERGED)])]
    out: dict[Comparison, tuple[np.ndarray, int]] = {}
    values: dict[tuple[str, str, str], tuple[dict[int, float], int]] = {}

    def cell(ds: str, arch: str, v: str) -> tuple[dict[int, float], int]:
        if (ds, arch, v) not in values:
            rows = ps[(ps["dataset"].astype(str) == ds) & (ps["arch"].astype(str) == arch)
                      & (ps["variant"].astype(str) == v)]
            got = {int(s): float(x) for s, x in zip(rows["seed"], rows["delta_m"]) if np.isfinite(x)}
            failed = bad[(bad["dataset"].astype(str) == ds) & (bad["arch"].astype(str) == arch)
                         & (bad.apply(lambda r: variant(r["method"], r["distribution"] or None), axis=1) == v)
                         ] if len(bad) else bad
            worst = min(got.values()) if got else np.nan
            for s in (failed["seed"] if len(failed) else []):
                got.setdefault(int(s), worst)
            values[(ds, arch, v)] = (got, len(failed))
        return values[(ds, arch, v)]

    for c in family:
        a, na = cell(c.dataset, c.arch, c.variant)
        b, nb = cell(c.dataset, c.arch, c.against)
        if all(s in a and s in b for s in seeds) and np.isfinite([a[s] - b[s] for s in seeds]).all():
            out[c] = (np.array([a[s] - b[s] for s in seeds]), na)
    return out


class RoundSource:
    """Feeds the final stage round by round (a job source for the driver)."""

    def __init__(self, spec: Spec, store: Any, jobs: list[Job], progress: Any, retry_failed: bool = False) -> None:
        self.spec, self.store, self.progress, self.retry_failed = spec, store, progress, retry_failed
        self.design = design(spec)
        self.margin = float(spec.sequential["margin"])
        self.family = comparisons(spec)
        self.by_cell: dict[tuple[str, str, str], dict[int, Job]] = {}
        for j in jobs:
            key = (j.config["dataset"], j.config["arch"], variant(j.config["method"], j.config.get("distribution")))
            self.by_cell.setdefault(key, {})[j.config["seed"]] = j
        self.decisions = load_decisions(store.root, spec.name)
        self.round, self.open = open_after(self.decisions, self.family)
        self.in_flight = 0
        self.queue: deque[Job] = deque()
        self.jobs: list[Job] = []  # every job of the rounds reached so far
        for r in range(self.round):
            self.jobs += self._round_jobs(r, self._open_before(r))
        self._enqueue()

    def _open_before(self, r: int) -> list[Comparison]:
        """Comparisons open when round ``r`` (0-based) started, from the recorded decisions."""
        if r == 0:
            return list(self.family)
        return open_after(self.decisions[self.decisions["round"] <= r], self.family)[1]

    def _round_jobs(self, r: int, open_: list[Comparison]) -> list[Job]:
        looks = self.design.looks
        seeds = self.spec.final_seeds[(looks[r - 1] if r else 0):looks[r]]
        return [self.by_cell[c][s] for c in sorted(cells_of(open_)) for s in seeds]

    def _enqueue(self) -> None:
        if self.round >= len(self.design.looks) or not self.open:
            return
        jobs = self._round_jobs(self.round, self.open)
        self.jobs += jobs
        self.queue = deque(pending(jobs, self.store.statuses(self.spec.name), self.retry_failed))
        looks = self.design.looks
        first = looks[self.round - 1] if self.round else 0
        self.progress.event(f"[final] round {self.round + 1}/{len(looks)}: {len(cells_of(self.open))} cells with "
                            f"{len(self.open)} open comparisons, seeds {self.spec.final_seeds[first]}.."
                            f"{self.spec.final_seeds[looks[self.round] - 1]}")
        self.progress.reset("final", len(jobs), len(jobs) - len(self.queue))

    @property
    def finished(self) -> bool:
        return self.round >= len(self.design.looks) or not self.open

    def next(self) -> Job | None | str:
        if self.queue:
            self.in_flight += 1
            return self.queue.popleft()
        if self.in_flight:
            return None
        if self.finished:
            return NO_MORE_JOBS
        self._close_round()
        return self.next()

    def done(self, job: Job, outcome: Outcome) -> None:
        self.in_flight -= 1

    def _close_round(self) -> None:
        """Decide every open comparison on the round's seeds, record the decisions, plan the next round."""
        n = self.design.looks[self.round]
        seeds = self.spec.final_seeds[:n]
        diffs = paired_differences(self.store.root, self.spec, seeds, self.open)
        rows = []
        for c in self.open:
            if c in diffs:
                d, failed = diffs[c]
                state, boundary = decide(d, self.round, self.design, self.margin)
                diff = float(d.mean())
            else:  # a side has no completed seed: nothing to test, more seeds cannot help
                state, boundary, diff, failed = State.CAPPED, "no completed seed on one side", float("nan"), 0
            rows.append({"study": self.spec.name, "round": self.round + 1, "seeds": n, "dataset": c.dataset,
                         "arch": c.arch, "variant": c.variant, "against": c.against, "state": state.value,
                         "boundary": boundary, "diff_delta_m": diff, "n_failed": failed,
                         "start": self.design.start, "step": self.design.step, "max": self.design.max,
                         "alpha": self.design.alpha, "family": self.design.family,
                         "spending": self.design.spending, "margin": self.margin})
        self.decisions = pd.concat([self.decisions, pd.DataFrame(rows)], ignore_index=True) \
            if len(self.decisions) else pd.DataFrame(rows)
        _write_decisions(self.store.root, self.spec.name, self.decisions)
        self.round += 1
        self.open = [c for c, r in zip(self.open, rows) if r["state"] == State.CONTINUE.value]
        self._enqueue()


def _family_of_json(spec_json: dict[str, Any]) -> list[Comparison]:
    """The comparisons of a saved plan's spec (``Spec.to_json``)."""
    methods = [(m["name"], m["distributions"]) for m in spec_json["methods"]]
    variants = [variant(n, d) for n, ds in methods for d in ds]
    against = [variant("rlw", ds[0]) for n, ds in methods if n == "rlw"]
    against += [variant(n, ds[0]) for n, ds in methods if n == spec_json["baseline"]]
    return [Comparison(ds["name"], arch, v, a) for ds in spec_json["datasets"] for arch in spec_json["archs"]
            for a in dict.fromkeys(against) for v in variants if v != a]


def planned_final(root: Path, spec_json: dict[str, Any], study: str) -> dict[str, int]:
    """"dataset/arch/method" -> final seeds its cells need so far: the seeds of decided comparisons, the
    next look for open ones (so that `litmus status` does not count seeds never needed as missing)."""
    looks = spec_json["sequential"]["looks"]
    dec = load_decisions(root, study)
    family = _family_of_json(spec_json)
    need: dict[tuple[str, str, str], int] = {}
    latest = {(r.dataset, r.arch, r.variant, r.against): r for r in latest_decisions(dec).itertuples()}
    for c in family:
        r = latest.get((c.dataset, c.arch, c.variant, c.against))
        n = looks[0] if r is None else (looks[min(r.round, len(looks) - 1)] if r.state == "continue" else r.seeds)
        for v in (c.variant, c.against):
            need[(c.dataset, c.arch, v)] = max(need.get((c.dataset, c.arch, v), 0), n)
    out: dict[str, int] = {}
    for (ds, arch, v), n in need.items():
        key = f"{ds}/{arch}/{v.split(':')[0]}"
        out[key] = out.get(key, 0) + n
    return out


def status_lines(root: Path, spec_json: dict[str, Any], study: str) -> list[str]:
    """Per cell: the round reached and its state (running, decided, capped) for ``litmus status``."""
    seq = spec_json.get("sequential") or {}
    if not seq:
        return []
    dec = load_decisions(root, study)
    lines = [f"  sequential final stage: looks at {', '.join(map(str, seq['looks']))} seeds"]
    if dec.empty:
        return lines + ["  round 1: no decision recorded yet"]
    latest = latest_decisions(dec)
    cells: dict[tuple[str, str, str], list[str]] = {}
    for r in latest.itertuples():
        state = f"running (round {r.round + 1})" if r.state == "continue" else f"{r.state} at {r.seeds} seeds"
        cells.setdefault((r.dataset, r.arch, r.variant), []).append(f"vs {r.against}: {state}")
    for (ds, arch, v), states in sorted(cells.items()):
        lines.append(f"  {ds}/{arch}/{v:<24} " + "; ".join(states))
    return lines


__all__ = ["RoundSource", "comparisons", "design", "load_decisions", "planned_final", "status_lines", "DesignError"]
