"""``litmus check-method NAME [--plugin ...]``: the conformance properties of a method (trainables/conformance.py)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    from .cli import add_plugin_argument

    c = sub.add_parser("check-method", help="check the properties every method must have (exit 1 if one fails)")
    c.add_argument("name", help="registered method name (see `litmus methods`)")
    c.add_argument("--dataset", default=None, help="benchmark of the training checks (default: a small multi_digits)")
    c.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option (repeatable)")
    c.add_argument("--no-train", action="store_true", help="bare-tensor checks only (no training)")
    add_plugin_argument(c)
    c.set_defaults(func=cmd_check_method)


def cmd_check_method(args: argparse.Namespace) -> int:
    from trainables import conformance, weighting

    from .cli import _kv, activate_plugins

    activate_plugins(args)
    weighting.get(args.name)  # an unknown name is bad input (exit 2), before any check runs
    checks = conformance.check_method(args.name, train=not args.no_train, dataset=args.dataset,
                                      options=_kv(args.option, "--option"))
    print(conformance.report(args.name, checks))
    return 0 if all(c.ok for c in checks) else 1
