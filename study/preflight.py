"""Before Ray starts: every dataset's data and pretrained weights are reachable, or one error says which are not.

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

from litmus.errors import UnreachableError  # noqa: F401 - part of this module's interface

from .spec import Spec


def check_reachable(spec: Spec, say: Callable[[str], None] = print) -> None:
    """Raise :class:`UnreachableError` naming every dataset input that is missing and cannot be fetched."""
    problems: list[str] = []
    for ds in spec.datasets:
        try:
            datasets.build(ds.name, **ds.options)
        except ValueError as err:
            problems.append(str(err).strip().splitlines()[0])
        for w in datasets.required_weights(ds.name, **ds.options):
            if w.present():
                continue
            say(f"litmus run: fetching {w.name} for {ds.name} into {w.where()}")
            try:
                w.fetch()
            except ValueError as err:
                problems.append(str(err))
    if problems:
        head = "a dataset input is" if len(problems) == 1 else f"{len(problems)} dataset inputs are"
        raise UnreachableError(f"{head} not reachable, nothing was started: " + " | ".join(problems))
