"""Create the 60/20/20 ``{domain}_{train,val,test}.txt`` lists of Office-31 / Office-Home from an image tree.

Usage: ``python -m trainables.datasets.make_splits ROOT [--domains amazon dslr webcam] [--seed 0]``

Images are found recursively under ``ROOT/{domain}/``; an image's class is the
name of its parent folder (Office-31's ``amazon/images/back_pack/x.jpg`` and
Office-Home's ``Art/Alarm_Clock/x.jpg`` both work). Class indices are the
sorted class names over all domains, so a label means the same class in every
domain. Each (domain, class) is shuffled with a fixed seed and split
60/20/20 (stratified), so the lists are deterministic. Office-Home's
``Real World`` folder is written as the task ``Real_World``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from litmus.errors import DataError

from ._images import IMAGE_SUFFIXES

FRACTIONS = (0.6, 0.2, 0.2)


def task_name(domain: str) -> str:
    return domain.replace(" ", "_")


def make_splits(root: str | Path, domains: list[str] | None = None, seed: int = 0,
                fractions: tuple[float, float, float] = FRACTIONS) -> dict[str, dict[str, int]]:
    """Write the split lists into ``root``; return ``{domain: {split: count}}``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"root {root} does not exist or is not a directory")
    if domains is None:
        domains = sorted(p.name for p in root.iterdir() if p.is_dir())
    images: dict[str, dict[str, list[str]]] = {}
    for d in domains:
        base = root / d
        if not base.is_dir():
            raise DataError(f"domain folder {base} does not exist")
        per_class: dict[str, list[str]] = {}
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                per_class.setdefault(p.parent.name, []).append(p.relative_to(root).as_posix())
        if not per_class:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {base}")
        images[d] = per_class
    classes = sorted({c for per in images.values() for c in per})
    index = {c: i for i, c in enumerate(classes)}
    counts: dict[str, dict[str, int]] = {}
    for d, per_class in images.items():
        lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for c in sorted(per_class):
            files = list(per_class[c])
            random.Random(f"{seed}/{d}/{c}").shuffle(files)
            n_train = round(fractions[0] * len(files))
            n_val = round(fractions[1] * len(files))
            parts = {"train": files[:n_train], "val": files[n_train:n_train + n_val], "test": files[n_train + n_val:]}
            for s, fs in parts.items():
                lines[s] += [f"{f} {index[c]}" for f in fs]
        counts[d] = {}
        for s, ls in lines.items():
            (root / f"{task_name(d)}_{s}.txt").write_text("\n".join(ls) + ("\n" if ls else ""), encoding="utf-8")
            counts[d][s] = len(ls)
    (root / "classes.txt").write_text("\n".join(f"{i} {c}" for i, c in enumerate(classes)) + "\n", encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainables.datasets.make_splits", description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--domains", nargs="+", default=None, help="domain folders (default: every subfolder)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        counts = make_splits(args.root, args.domains, args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for d, c in counts.items():
        print(f"{task_name(d)}: " + ", ".join(f"{s} {n}" for s, n in c.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
