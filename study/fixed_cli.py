"""``litmus fixed-weights STORE TRIAL_ID [--beta 0.9]``: print a spec entry with a trial's EMA-extracted weights."""

from __future__ import annotations

import argparse
from typing import Any

import yaml


def register(sub: Any) -> None:
    f = sub.add_parser("fixed-weights", help="fixed task weights from a finished trial's recorded weights "
                       "(per-epoch means, EMA, last value; Gama & Grassi), printed as a spec method entry")
    f.add_argument("store", help="results store directory")
    f.add_argument("trial_id", help="trial whose weights to extract (see the store's trials/ table)")
    f.add_argument("--beta", type=float, default=0.9, help="EMA factor (default 0.9)")
    f.set_defaults(func=cmd_fixed_weights)


def cmd_fixed_weights(args: argparse.Namespace) -> int:
    from .fixed_weights import extract_fixed_weights, spec_entry, task_order

    weights = extract_fixed_weights(args.store, args.trial_id, beta=args.beta)
    tasks = task_order(args.store, args.trial_id)
    print(f"# fixed weights of trial {args.trial_id} (tasks: {', '.join(tasks)}; EMA beta {args.beta}, last value)")
    print(yaml.safe_dump([spec_entry(weights)], default_flow_style=None, sort_keys=False).rstrip())
    return 0
