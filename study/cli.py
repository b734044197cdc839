"""The ``litmus`` command line.

``litmus train`` (one trial, no Ray), ``litmus methods``, ``litmus datasets``;
``litmus run``/``status`` (the study orchestrator) and ``litmus report``/
``table`` (the analysis) register their own subcommands here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable

import yaml

from litmus.errors import CLIError, LitmusError

USAGE_ERROR = 2


def _json_or_yaml(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not valid YAML/JSON: {value!r} ({err})") from None


def _kv(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"{what} must be KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = _json_or_yaml(v)
    return out


def activate_plugins(args: argparse.Namespace) -> None:
    """Installed entry-point plugins and the ``--plugin`` modules/files, before any name is looked up."""
    from trainables import plugins

    plugins.activate(getattr(args, "plugin", None) or [])


def cmd_train(args: argparse.Namespace) -> int:
    from analysis.schema import Status
    from trainables.config import TrainConfig, resolve

    from .preflight import check_weights
    from .console import eprint
    from .single import format_metrics, run_single
    from .store import Store

    activate_plugins(args)

    cfg = TrainConfig(
        dataset=args.dataset, method=args.method, arch=args.arch, distribution=args.distribution,
        method_params=_kv(args.param, "--param"), dataset_options=_kv(args.option, "--option"),
        seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, optimizer=args.optimizer, scheduler=args.scheduler,
        grad_clip=args.grad_clip, device=args.device, space=args.space, amp=args.amp,
        num_threads=args.threads, num_workers=args.workers, max_steps_per_epoch=args.max_steps,
    )
    resolved, bench = resolve(cfg)  # every bad input fails here, before data are loaded
    check_weights(bench)  # missing pretrained weights: fetched now or refused, before the store
    store = Store(args.store)
    eprint(f"litmus train: {resolved.method} on {resolved.dataset} ({resolved.arch}), seed {resolved.seed}, "
           f"{resolved.epochs} epochs -> {store.root}")
    tid, status, last = run_single(cfg, store, study=args.study, progress=lambda s: eprint("  " + s))
    print(format_metrics(last, "test"))
    print(f"\ntrial {tid}: {status}; rows in {store.root}")
    return 0 if status == Status.COMPLETED else 1


def cmd_methods(args: argparse.Namespace) -> int:
    from trainables import weighting

    activate_plugins(args)
    for kind, title in (("loss", "Loss weighting"), ("grad", "Gradient methods (combine as LOSS+GRAD)")):
        print(f"{title}:")
        for name in weighting.names(kind):
            cls = weighting.get(name)
            hp = ", ".join(f"{p.name}={p.default!r}" for p in cls.hparams) or "-"
            extra = f" spaces={'/'.join(cls.spaces)}" if kind == "grad" else ""
            rnd = " [random: distributions " + ", ".join(weighting.DISTRIBUTIONS) + "]" if weighting.takes_distribution(name) else ""
            origin = weighting.origin(name)
            plugin = "" if origin.startswith("litmus") else f" [{origin}]"
            print(f"  {name:<12} {hp}{extra}{rnd}{plugin}")
            if args.verbose and cls.paper:
                print(f"  {'':<12} {cls.paper}")
    print("Aliases:")
    for alias, target in weighting.registry.ALIASES.items():
        print(f"  {alias:<12} = {target}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from trainables import architectures, datasets

    activate_plugins(args)
    for name in datasets.names():
        cls = datasets.get(name)
        tag = "bundled" if cls.bundled else "needs root="
        origin = datasets.origin(name)
        plugin = "" if origin.startswith("litmus") else f" [{origin}]"
        print(f"{name:<18} [{tag}] tasks: {', '.join(cls.tasks)}{plugin}")
        if args.verbose:
            print(f"{'':<18} {cls.description}")
            for o in cls.options:
                print(f"{'':<20} option {o.name}={o.default!r}  {o.help}")
    print(f"\narchitectures: {', '.join(architectures.names())}")
    return 0


def add_plugin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", metavar="MODULE|PATH",
                   help="plugin module or .py file/package directory registering methods, datasets or "
                        "architectures (repeatable; installed litmus.* entry points load by themselves)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``litmus`` parser; with ``argv``, only the sub-CLI module that owns its command is imported."""
    p = argparse.ArgumentParser(prog="litmus", description="Does this MTL weighting method beat random weighting?")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train one trial without Ray and write it to a store")
    t.add_argument("--dataset", required=True, help="registered dataset (see `litmus datasets`)")
    t.add_argument("--method", default="ew", help="method or LOSS+GRAD combination (see `litmus methods`)")
    t.add_argument("--arch", default="hps")
    t.add_argument("--distribution", default=None, help="sampling distribution of a random method (rlw, rgw)")
    t.add_argument("--param", action="append", metavar="KEY=VALUE", help="method hyperparameter (repeatable)")
    t.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option (repeatable)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--weight-decay", type=float, default=None)
    t.add_argument("--optimizer", default=None, choices=["adam", "adamw", "sgd"])
    t.add_argument("--scheduler", default=None, choices=["none", "step", "cosine"])
    t.add_argument("--grad-clip", type=float, default=None)
    t.add_argument("--space", default=None, choices=["param", "rep"], help="gradient methods: Jacobian space")
    t.add_argument("--device", default="auto")
    t.add_argument("--amp", action="store_true", help="bfloat16 autocast (GPU only)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for file-backed datasets")
    t.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch (smoke runs)")
    t.add_argument("--store", default="litmus-results", help="results store directory")
    t.add_argument("--study", default="adhoc", help="study name recorded with the rows")
    add_plugin_argument(t)
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("methods", help="list registered methods and their hyperparameters")
    m.add_argument("-v", "--verbose", action="store_true")
    add_plugin_argument(m)
    m.set_defaults(func=cmd_methods)
    d = sub.add_parser("datasets", help="list registered datasets, tasks and options")
    d.add_argument("-v", "--verbose", action="store_true")
    add_plugin_argument(d)
    d.set_defaults(func=cmd_datasets)

    for module in SUB_CLIS if argv is None else _sub_clis_for(argv):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        mod.register(sub)
    return p


#: modules that register their own subcommands, and the commands each registers (tests/test_cli_light.py
#: checks this table against what they register): a command imports only its own module, so that
#: `litmus status` loads neither the analysis (pandas, scipy, statsmodels) nor the trainer (torch)
SUB_CLIS: dict[str, tuple[str, ...]] = {
    "study.run_cli": ("run", "compact", "status"),
    "analysis.cli": ("report", "table"),
    "study.fixed_cli": ("fixed-weights",),
    "study.weights_cli": ("weights",),
    "study.check_cli": ("check-method",),
}


BUILT_IN = ("train", "methods", "datasets")  # registered by build_parser itself


def _sub_clis_for(argv: list[str]) -> list[str]:
    """The sub-CLI module of the command in ``argv`` (its first word that is not an option); every module
    when that word is no command of theirs (help, a built-in command, a typo: argparse then lists them all)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    if word in BUILT_IN:
        return []
    owner = [m for m, commands in SUB_CLIS.items() if word in commands]
    return owner or list(SUB_CLIS)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE_ERROR
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except LitmusError as err:  # raised on purpose: one line (bad input: exit 2; a run that could not finish: 1)
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"litmus: {'error: ' if err.exit_code == USAGE_ERROR else ''}{msg}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("litmus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

