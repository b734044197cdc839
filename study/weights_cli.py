"""``litmus weights check|fetch [SPEC]``: the pretrained weights a study needs, present or fetched into a cache.

On a machine with internet, ``litmus weights fetch SPEC --cache DIR`` downloads every dataset's pretrained
weights (torchvision ImageNet backbones, Hugging Face encoders and tokenizers) into ``DIR``; copy ``DIR`` to
the cluster and set ``TORCH_HOME=DIR/torch`` and ``HF_HOME=DIR/huggingface`` there: trials then run offline.
Without ``--cache`` the usual caches (``$TORCH_HOME``, ``$HF_HOME``) are used. The spec's data need not be
on this machine (only the datasets' names and model options are read). ``check`` fetches nothing and exits 2
if something is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the trainer's modules (and torch) load only when a weights command runs
    from trainables.datasets._weights import Weights

from litmus.errors import ConfigError

from .console import eprint


def register(sub: Any) -> None:
    w = sub.add_parser("weights", help="check or fetch the pretrained weights of a study spec (offline clusters)")
    actions = w.add_subparsers(dest="weights_action", metavar="ACTION")
    for name, text in (("check", "say which pretrained weights of SPEC are present, fetch nothing (exit 2 if any is missing)"),
                       ("fetch", "download the pretrained weights SPEC needs into the cache (on a machine with internet)")):
        a = actions.add_parser(name, help=text)
        a.add_argument("spec", nargs="?", default=None, help="study spec (YAML); default: the shipped quickstart")
        a.add_argument("--cache", default=None,
                       help="cache folder: TORCH_HOME=DIR/torch and HF_HOME=DIR/huggingface for this command")
        a.set_defaults(func=cmd_weights, weights_action=name)
    w.set_defaults(func=lambda args: (w.print_help(), 2)[1])


def spec_datasets(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(name, options)`` of each dataset of a spec file, read without checking the data."""
    from trainables import datasets

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read spec {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    entries = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: datasets must be a non-empty list")
    out = []
    for k, e in enumerate(entries):
        e = {"name": e} if isinstance(e, str) else e
        if not isinstance(e, dict) or e.get("name") not in datasets.names():
            raise ConfigError(f"{path}: datasets[{k}].name must be one of {', '.join(datasets.names())}")
        opts = e.get("options") or {}
        if not isinstance(opts, dict):
            raise ConfigError(f"{path}: datasets[{k}].options must be a mapping")
        out.append((e["name"], opts))
    return out


def spec_weights(path: Path, hf_cache: Path | None = None) -> list[Weights]:
    """Every distinct set of pretrained weights the spec's datasets load."""
    from trainables import datasets
    from trainables.datasets._weights import HFWeights

    seen: dict[tuple, Weights] = {}
    for name, opts in spec_datasets(path):
        for w in datasets.required_weights(name, **opts):
            if isinstance(w, HFWeights) and hf_cache is not None:
                w = dataclasses.replace(w, cache_dir=str(hf_cache))
            key = (type(w).__name__, w.where() if not isinstance(w, HFWeights) else w.model)
            seen.setdefault(key, w)
    return list(seen.values())


def cmd_weights(args: argparse.Namespace) -> int:
    from . import spec as spec_mod

    path = Path(args.spec) if args.spec else spec_mod.quickstart_path()
    cache = Path(args.cache).expanduser().resolve() if args.cache else None
    old = os.environ.get("TORCH_HOME")
    if cache is not None:
        os.environ["TORCH_HOME"] = str(cache / "torch")
    try:
        return _run(args.weights_action, path, cache)
    finally:
        if cache is not None:
            if old is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = old


def _run(action: str, path: Path, cache: Path | None) -> int:
    needed = spec_weights(path, None if cache is None else cache / "huggingface" / "hub")
    if not needed:
        print(f"{path}: no dataset loads pretrained weights")
        return 0
    missing = []
    for w in needed:
        if not w.present() and action == "fetch":
            eprint(f"fetching {w.name} into {w.where()}")
            try:
                w.fetch()
            except ValueError as err:
                eprint(f"litmus: error: {err}")
        ok = w.present()
        print(f"{'present' if ok else 'MISSING'}  {w.dataset}: {w.name} at {w.where()}")
        if not ok:
            missing.append(w)
    if cache is not None:
        print(f"\non the offline machine: export TORCH_HOME={cache / 'torch'} HF_HOME={cache / 'huggingface'}")
    if missing:
        eprint(f"litmus: error: {len(missing)} of {len(needed)} pretrained weights missing; {missing[0].supply()}")
        return 2
    return 0
