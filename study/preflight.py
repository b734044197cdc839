"""Before Ray starts (``litmus run``) or a trial is recorded (``litmus train``): every dataset's data and
pretrained weights are reachable, or one error says which are not.

Data: each dataset is built again (its ``check``: root and files present, unusable files such as XTREME's
unlabelled test files refused). Weights: each dataset's ``pretrained_weights()`` are looked up where their
library looks (torch hub cache, Hugging Face cache, a local file or directory); missing ones are fetched
into that cache once here, rather than by every trial, and if that fails (no network) the study does not
start. Workers on other nodes read their own caches: share them (TORCH_HOME, HF_HOME) or fill them with
``litmus weights fetch`` (docs/data.md).
"""

from __future__ import annotations

from typing import Callable

from trainables import datasets
from trainables.datasets import Benchmark
from trainables.datasets._weights import Weights

from litmus.errors import UnreachableError

from .spec import Spec


def fetch_missing(weights: list[Weights], dataset: str, say: Callable[[str], None]) -> list[str]:
    """Fetch each of ``weights`` that is missing into its cache, once (``say`` names it first); returns the
    one-line error of each that cannot be fetched."""
    problems: list[str] = []
    for w in weights:
        if w.present():
            continue
        say(f"fetching {w.name} for {dataset} into {w.where()}")
        try:
            w.fetch()
        except ValueError as err:
            problems.append(str(err))
    return problems


def check_weights(bench: Benchmark) -> None:
    """``litmus train``: raise :class:`UnreachableError` (one line) unless the pretrained weights of ``bench``
    (its data were checked when it was built) are present or fetched now (silently, as the trainer would;
    the download shows its own progress), before the store is touched."""
    problems = fetch_missing(bench.pretrained_weights(), bench.name, lambda s: None)
    if problems:
        raise UnreachableError(" | ".join(problems))


def check_reachable(spec: Spec, say: Callable[[str], None] = print) -> None:
    """Raise :class:`UnreachableError` naming every dataset input that is missing and cannot be fetched."""
    problems: list[str] = []
    for ds in spec.datasets:
        try:
            datasets.build(ds.name, **ds.options)
        except ValueError as err:
            problems.append(str(err).strip().splitlines()[0])
        problems += fetch_missing(datasets.required_weights(ds.name, **ds.options), ds.name,
                                  lambda s: say(f"litmus run: {s}"))
    if problems:
        head = "a dataset input is" if len(problems) == 1 else f"{len(problems)} dataset inputs are"
        raise UnreachableError(f"{head} not reachable, nothing was started: " + " | ".join(problems))
