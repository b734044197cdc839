"""Study specs: YAML (safe-loaded) -> validated dataclasses.

Every error is a :class:`SpecError` (a ``ValueError``) with one line naming
the field path (``datasets[1].options.n_train``) and what is allowed. Every
planned trial config is checked with ``trainables.config.resolve`` here, so
nothing malformed reaches Ray. docs/spec.md is the reference.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainables import datasets, weighting
from trainables.config import TrainConfig, resolve
from trainables.weighting.base import check_hparams

from litmus.errors import SpecError  # noqa: F401 - part of this module's interface

#: TrainConfig fields a spec may set per dataset (``train:``) or study-wide (``train:`` at the top)
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                     if f.name not in ("dataset", "method", "arch", "distribution", "method_params",
                                       "dataset_options", "seed", "epochs"))
SHARED_SPACE = ("lr", "weight_decay")
SAMPLERS = ("tpe", "random")
TRIAL_SCHEDULERS = ("asha",)
EPOCH_SELECTION = ("best-val", "last")
#: longest study name (it names the plan file, Optuna studies and Ray's experiment folders)
MAX_NAME = 100
#: largest spec file accepted (real specs are a few kB)
MAX_SPEC_BYTES = 1_000_000
MAX_REPLICATES = 100


@dataclass
class DatasetSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None  # the maximum number of epochs (None: the dataset's default)
    train: dict[str, Any] = field(default_factory=dict)
    patience: int | None = None  # early stopping on validation Delta-m (study/convergence.py)


@dataclass
class MethodSpec:
    name: str
    distributions: list[str | None] = field(default_factory=lambda: [None])
    params: dict[str, Any] = field(default_factory=dict)
    space: str | None = None


@dataclass
class Range:
    """A shared search dimension: fixed value or [low, high] (log scale by default)."""

    low: float
    high: float
    log: bool = True

    @property
    def fixed(self) -> bool:
        return self.low == self.high


@dataclass
class TuningSpec:
    methods: list[str]
    trials: int = 4
    seeds: list[int] = field(default_factory=lambda: [1000])
    shared: dict[str, Range] = field(default_factory=dict)
    sampler: str = "tpe"
    sampler_seed: int = 0
    scheduler: dict[str, Any] | None = None
    storage: str | None = None
    startup: int = 10  # the common-random-numbers start-up trials (all of them with the random sampler)
    replicates: int = 1

    def replicate_seeds(self, r: int) -> list[int]:
        """Tuning seeds of replicate ``r``: ``seeds`` shifted by ``r`` times their span (disjoint replicates)."""
        span = max(self.seeds) - min(self.seeds) + 1
        return [s + r * span for s in self.seeds]

    @property
    def all_seeds(self) -> list[int]:
        return [s for r in range(self.replicates) for s in self.replicate_seeds(r)]

    @property
    def enabled(self) -> bool:
        return bool(self.methods) and self.trials > 0


@dataclass
class Spec:
    name: str
    store: Path
    datasets: list[DatasetSpec]
    archs: list[str]
    methods: list[MethodSpec]
    tuning: TuningSpec
    final_seeds: list[int]
    epoch: str = "best-val"
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1.0, "gpu": 0.0})
    concurrency: int | None = None
    retries: int = 2
    checkpoint_every: int = 1
    baseline: str = "ew"
    source: str = ""
    sequential: dict[str, Any] | None = None  # final.seeds: {start, step, max, until} (study/rounds.py)
    #: plugin modules and files (absolute paths), imported before anything is looked up (docs/plugins.md)
    plugins: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["store"] = str(self.store)
        return d

    def method(self, name: str) -> MethodSpec:
        return next(m for m in self.methods if m.name == name)


# --- small checkers ------------------------------------------------------
def _fail(path: str, msg: str) -> SpecError:
    return SpecError(f"{path}: {msg}" if path else msg)


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    return value


def _keys(d: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    bad = sorted(str(k) for k in d if k not in allowed)
    if bad:
        raise _fail(f"{path}.{bad[0]}" if path else bad[0], f"unknown field; allowed: {', '.join(allowed)}")


def _named_entry(value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A list entry written as a bare name (``- ew``) or as a mapping with a ``name`` (``- {name: ew, ...}``)."""
    d = _mapping({"name": value} if isinstance(value, str) else value, path)
    _keys(d, path, allowed)
    return d


def _int(value: Any, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, path: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0):
        raise _fail(path, f"must be a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return float(value)


def _seeds(value: Any, path: str) -> list[int]:
    """``[0, 1, 2]``, or a count ``3`` meaning ``0..2``, or ``{start: 100, count: 2}``."""
    if isinstance(value, dict):
        _keys(value, path, ("start", "count"))
        start = _int(value.get("start", 0), f"{path}.start")
        seeds = list(range(start, start + _int(value.get("count"), f"{path}.count", 1)))
    elif isinstance(value, int) and not isinstance(value, bool):
        seeds = list(range(_int(value, path, 1)))
    elif isinstance(value, list):
        seeds = [_int(s, f"{path}[{i}]") for i, s in enumerate(value)]
    else:
        raise _fail(path, f"must be a list of seeds, a count, or {{start, count}}, got {value!r}")
    if not seeds:
        raise _fail(path, "needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise _fail(path, f"has repeated seeds: {seeds}")
    return seeds


def _sequential(value: dict[str, Any], final: dict[str, Any], path: str) -> dict[str, Any]:
    """``final.seeds: {start, step, max, until: decided[, spending]}`` plus ``final.margin`` / ``final.alpha``
    (types here; the design itself is checked against its family size by study/rounds.py)."""
    _keys(value, f"{path}.seeds", ("start", "step", "max", "until", "spending"))
    for key in ("start", "step", "max", "until"):
        if key not in value:
            raise _fail(f"{path}.seeds.{key}", "missing (a sequential design needs start, step, max and until)")
    for key in ("start", "step", "max"):
        if isinstance(value[key], bool) or not isinstance(value[key], int):
            raise _fail(f"{path}.seeds.{key}", f"expected an integer, got {value[key]!r}")
    return {"start": value["start"], "step": value["step"], "max": value["max"], "until": value["until"],
            "spending": value.get("spending", "pocock"),
            "margin": _number(final.get("margin", 0.5), f"{path}.margin", positive=True),
            "alpha": _number(final.get("alpha", 0.05), f"{path}.alpha", positive=True)}


def _names(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _fail(path, "must be a non-empty list")
    return value


def _no_repeats(items: list[Any], path: str, msg: str) -> None:
    """Refuse a repeated entry (a name, or a mapping's ``name``) before any entry is validated."""
    seen: dict[str, int] = {}
    for i, x in enumerate(items):
        name = x.get("name") if isinstance(x, dict) else x
        if isinstance(name, str):
            if name in seen:
                raise _fail(f"{path}[{i}]", f"{msg}: {name!r} is also {path}[{seen[name]}]")
            seen[name] = i


# --- sections ------------------------------------------------------------
def _dataset(value: Any, path: str) -> DatasetSpec:
    d = _named_entry(value, path, ("name", "options", "epochs", "train"))
    name = d.get("name")
    if name not in datasets.names():
        raise _fail(f"{path}.name", f"unknown dataset {name!r}; valid: {', '.join(datasets.names())}")
    options = _mapping(d.get("options"), f"{path}.options")
    known = {o.name for o in datasets.get(name).options}
    for k in options:
        if k not in known:
            raise _fail(f"{path}.options.{k}", f"unknown option for dataset {name!r}; valid: {', '.join(sorted(known))}")
    try:
        datasets.build(name, **options)
    except ValueError as err:
        bad = next((k for k in options if k in str(err)), None)
        raise _fail(f"{path}.options" + (f".{bad}" if bad else ""), str(err)) from None
    epochs, patience = _epochs(d.get("epochs"), f"{path}.epochs")
    train = _mapping(d.get("train"), f"{path}.train")
    _keys(train, f"{path}.train", TRAIN_FIELDS)
    return DatasetSpec(name, dict(options), epochs, dict(train), patience)


def _epochs(value: Any, path: str) -> tuple[int | None, int | None]:
    """``epochs: N`` or ``epochs: {max: N, patience: P}`` -> (max, patience)."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        return _int(value, path, 1), None
    _keys(value, path, ("max", "patience"))
    top = None if value.get("max") is None else _int(value["max"], f"{path}.max", 1)
    patience = None if value.get("patience") is None else _int(value["patience"], f"{path}.patience", 1)
    return top, patience


def _method(value: Any, path: str) -> MethodSpec:
    d = _named_entry(value, path, ("name", "distributions", "params", "space"))
    name = d.get("name")
    try:
        weighting.split_name(name)
    except ValueError as err:
        raise _fail(f"{path}.name", str(err)) from None
    dists: list[str | None]
    if "distributions" in d:
        if not weighting.takes_distribution(name):
            rnd = ", ".join(n for n in weighting.names() if weighting.takes_distribution(n))
            raise _fail(f"{path}.distributions", f"method {name!r} is not random; only random methods ({rnd}) take distributions")
        raw = d["distributions"]
        raw = [raw] if isinstance(raw, str) else _names(raw, f"{path}.distributions")
        for i, x in enumerate(raw):
            if x not in weighting.DISTRIBUTIONS:
                raise _fail(f"{path}.distributions[{i}]", f"unknown distribution {x!r}; valid: {', '.join(weighting.DISTRIBUTIONS)}")
        if len(set(raw)) != len(raw):
            raise _fail(f"{path}.distributions", f"repeated distributions: {raw}")
        dists = list(raw)
    else:
        dists = ["normal"] if weighting.takes_distribution(name) else [None]
    params = _mapping(d.get("params"), f"{path}.params")
    if "distribution" in params:
        raise _fail(f"{path}.params.distribution", "set distributions with the method's 'distributions' list")
    try:  # names and values here; values that depend on the dataset (fixed's T weights) in check_configs
        for part, hp in zip(weighting.split_name(name), weighting.registry.split_hparams(name, params)):
            if part is not None:
                check_hparams(weighting.get(part), hp)
    except ValueError as err:
        raise _fail(f"{path}.params", str(err)) from None
    space = d.get("space")
    if space is not None and space not in ("param", "rep"):
        raise _fail(f"{path}.space", f"must be param or rep, got {space!r}")
    return MethodSpec(name, dists, dict(params), space)


def _range(value: Any, path: str, name: str) -> Range:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _number(value, path, positive=(name == "lr"))
        return Range(v, v, False)
    d = _mapping(value, path)
    _keys(d, path, ("low", "high", "log"))
    low = _number(d.get("low"), f"{path}.low", positive=True)
    high = _number(d.get("high"), f"{path}.high", positive=True)
    if high < low:
        raise _fail(f"{path}.high", f"must be >= low ({low}), got {high}")
    log = d.get("log", True)
    if not isinstance(log, bool):
        raise _fail(f"{path}.log", f"must be true or false, got {log!r}")
    return Range(low, high, log)


def _tuning(value: Any, path: str, methods: list[MethodSpec]) -> TuningSpec:
    d = _mapping(value, path)
    _keys(d, path, ("methods", "trials", "seeds", "shared", "sampler", "scheduler", "storage", "replicates"))
    names = [m.name for m in methods]
    raw = d.get("methods", "all")
    if raw == "all":
        tuned = list(names)
    elif raw in (None, "none", []):
        tuned = []
    else:
        raw = [raw] if isinstance(raw, str) else _names(raw, f"{path}.methods")
        for i, m in enumerate(raw):
            if m not in names:
                raise _fail(f"{path}.methods[{i}]", f"{m!r} is not one of the study's methods ({', '.join(names)})")
        tuned = [m for m in names if m in raw]
    trials = _int(d.get("trials", 4), f"{path}.trials", 1 if tuned else 0)
    seeds = _seeds(d.get("seeds", [1000]), f"{path}.seeds")
    shared_raw = _mapping(d.get("shared"), f"{path}.shared")
    _keys(shared_raw, f"{path}.shared", SHARED_SPACE)
    shared = {k: _range(v, f"{path}.shared.{k}", k) for k, v in shared_raw.items()}
    sampler_raw = d.get("sampler", "tpe")
    if isinstance(sampler_raw, str):
        sampler_raw = {"type": sampler_raw}
    s = _mapping(sampler_raw, f"{path}.sampler")
    _keys(s, f"{path}.sampler", ("type", "seed", "startup"))
    if s.get("type", "tpe") not in SAMPLERS:
        raise _fail(f"{path}.sampler.type", f"unknown sampler {s.get('type')!r}; valid: {', '.join(SAMPLERS)}")
    sched = d.get("scheduler")
    if sched is not None:
        sched = {"type": sched} if isinstance(sched, str) else _mapping(sched, f"{path}.scheduler")
        _keys(sched, f"{path}.scheduler", ("type", "grace_period", "reduction_factor"))
        if sched.get("type") not in TRIAL_SCHEDULERS:
            raise _fail(f"{path}.scheduler.type", f"unknown scheduler {sched.get('type')!r}; valid: {', '.join(TRIAL_SCHEDULERS)} (or null)")
        _int(sched.get("grace_period", 1), f"{path}.scheduler.grace_period", 1)
        _int(sched.get("reduction_factor", 2), f"{path}.scheduler.reduction_factor", 2)
    storage = d.get("storage")
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise _fail(f"{path}.storage", f"must be an RDB URL such as sqlite:///path.db or postgresql://..., got {storage!r}")
    kind = s.get("type", "tpe")
    startup = _int(s.get("startup", 10), f"{path}.sampler.startup", 1)
    if kind == "random" and "startup" in s:
        raise _fail(f"{path}.sampler.startup", "only for the tpe sampler (the random sampler draws every trial "
                    "from the shared sequence)")
    replicates = _int(d.get("replicates", 1), f"{path}.replicates", 1)
    if replicates > MAX_REPLICATES:
        raise _fail(f"{path}.replicates", f"at most {MAX_REPLICATES}, got {replicates}")
    return TuningSpec(tuned, trials, seeds, shared, kind, _int(s.get("seed", 0), f"{path}.sampler.seed"), sched,
                      storage, startup=trials if kind == "random" else min(startup, trials), replicates=replicates)


def _resources(value: Any, path: str) -> dict[str, float]:
    d = _mapping(value, path)
    _keys(d, path, ("cpu", "gpu"))
    cpu = _number(d.get("cpu", 1), f"{path}.cpu", positive=True)
    gpu = _number(d.get("gpu", 0), f"{path}.gpu")
    if gpu > 1 and gpu != int(gpu):
        raise _fail(f"{path}.gpu", f"a fraction above 1 is not allowed (use an integer or a value <= 1), got {gpu}")
    return {"cpu": cpu, "gpu": gpu}


def _plugins(value: Any, base: Path | None) -> list[str]:
    """Import the spec's plugins (paths relative to the spec's directory) before any name is checked."""
    from trainables import plugins

    raw = [] if value is None else ([value] if isinstance(value, str) else value)
    if not isinstance(raw, list):
        raise _fail("plugins", f"must be a list of module names or paths, got {value!r}")
    plugins.load_entry_points()
    out = []
    for i, ref in enumerate(raw):
        try:
            out.append(plugins.load([ref], base)[0].ref)
        except ValueError as err:
            raise _fail(f"plugins[{i}]", str(err)) from None
    return out


# --- entry points --------------------------------------------------------
def parse(data: Any, source: str = "<spec>", base: Path | None = None) -> Spec:
    """Validate a spec mapping (as safe-loaded from YAML) into a :class:`Spec`."""
    d = _mapping(data, "")
    _keys(d, "", ("name", "store", "datasets", "architectures", "methods", "tuning", "final",
                  "resources", "concurrency", "retries", "checkpoint_every", "baseline", "plugins"))
    plugins = _plugins(d.get("plugins"), Path(source).parent if Path(source).is_file() else base)
    name = d.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise _fail("name", f"must be a non-empty name of letters, digits, '-', '_' or '.', got {name!r}")
    if len(name) > MAX_NAME:  # it names files and folders (with a date and PID appended): stay far below 255 bytes
        raise _fail("name", f"must be at most {MAX_NAME} characters, got {len(name)}")
    store_raw = d.get("store", f"litmus-results/{name}")
    if not isinstance(store_raw, str) or not store_raw:
        raise _fail("store", f"must be a path, got {store_raw!r}")
    store = Path(os.path.expandvars(store_raw)).expanduser()
    if not store.is_absolute():
        store = (base or Path.cwd()) / store
    raw_datasets = _names(d.get("datasets"), "datasets")
    _no_repeats(raw_datasets, "datasets", "a dataset is listed twice")  # before building any (linear in the spec)
    dss = [_dataset(x, f"datasets[{i}]") for i, x in enumerate(raw_datasets)]
    if len({x.name for x in dss}) != len(dss):
        raise _fail("datasets", "a dataset is listed twice")
    archs = d.get("architectures", ["hps"])
    archs = [archs] if isinstance(archs, str) else _names(archs, "architectures")
    from trainables import architectures
    for i, a in enumerate(archs):
        if a not in architectures.names():
            raise _fail(f"architectures[{i}]", f"unknown architecture {a!r}; valid: {', '.join(architectures.names())}")
    raw_methods = _names(d.get("methods"), "methods")
    _no_repeats(raw_methods, "methods", "a method is listed twice (list several distributions under one entry)")
    methods = [_method(x, f"methods[{i}]") for i, x in enumerate(raw_methods)]
    if len({m.name for m in methods}) != len(methods):
        raise _fail("methods", "a method is listed twice (list several distributions under one entry)")
    baseline = d.get("baseline", "ew")
    if baseline not in [m.name for m in methods]:
        raise _fail("baseline", f"{baseline!r} must be one of the study's methods ({', '.join(m.name for m in methods)})")
    tuning = _tuning(d.get("tuning"), "tuning", methods)
    final = _mapping(d.get("final"), "final")
    _keys(final, "final", ("seeds", "epoch", "margin", "alpha"))
    seeds_value = final.get("seeds", 3)
    sequential = _sequential(seeds_value, final, "final") if isinstance(seeds_value, dict) and \
        any(k in seeds_value for k in ("until", "step", "max")) else None
    final_seeds = list(range(sequential["max"])) if sequential else _seeds(seeds_value, "final.seeds")
    epoch = final.get("epoch", "best-val")
    if epoch not in EPOCH_SELECTION:
        raise _fail("final.epoch", f"must be one of {', '.join(EPOCH_SELECTION)}, got {epoch!r}")
    scored = tuning.enabled or any(ds.patience for ds in dss)  # the EW reference runs on the tuning seeds
    overlap = sorted(set(final_seeds) & set(tuning.all_seeds)) if scored else []
    if overlap:
        where = "tuning.seeds" if tuning.replicates == 1 else "tuning.replicates"
        raise _fail(where, f"the tuning seeds {tuning.all_seeds} overlap the final seeds {overlap}; "
                    "tuning and final seeds must be disjoint")
    concurrency = d.get("concurrency")
    if concurrency is not None:
        concurrency = _int(concurrency, "concurrency", 1)
    spec = Spec(
        name=name, store=store, datasets=dss, archs=list(archs), methods=methods, tuning=tuning,
        final_seeds=final_seeds, epoch=epoch, resources=_resources(d.get("resources"), "resources"),
        concurrency=concurrency, retries=_int(d.get("retries", 2), "retries"),
        checkpoint_every=_int(d.get("checkpoint_every", 1), "checkpoint_every"), baseline=baseline, source=source,
        sequential=sequential, plugins=plugins,
    )
    if sequential:
        from .rounds import DesignError, design
        try:
            sequential["looks"] = design(spec).looks
        except DesignError as err:
            raise SpecError(str(err)) from None
    check_configs(spec)
    return spec


def check_configs(spec: Spec) -> None:
    """Resolve one config per dataset x arch x method x distribution (defaults and range ends of the shared space)."""
    for i, ds in enumerate(spec.datasets):
        for arch in spec.archs:
            for j, m in enumerate(spec.methods):
                for dist in m.distributions:
                    cfg = base_config(spec, ds, arch, m, dist, seed=spec.final_seeds[0])
                    where = f"methods[{j}]" if m.space or m.params else f"datasets[{i}]"
                    try:
                        resolve(cfg)
                        for k, r in spec.tuning.shared.items():
                            resolve(dataclasses.replace(cfg, **{k: r.low}))
                            resolve(dataclasses.replace(cfg, **{k: r.high}))
                    except ValueError as err:
                        raise _fail(where, f"{m.name} on {ds.name} ({arch}): {err}") from None


def base_config(spec: Spec, ds: DatasetSpec, arch: str, m: MethodSpec, dist: str | None, seed: int,
                params: dict[str, Any] | None = None, shared: dict[str, Any] | None = None) -> TrainConfig:
    """The TrainConfig of one trial (untuned defaults unless ``params``/``shared`` are given)."""
    extra = dict(ds.train)
    if spec.resources.get("gpu", 0) == 0 and "device" not in extra:
        extra["device"] = "cpu"
    hp = dict(m.params)
    hp.update(params or {})
    fixed = {k: r.low for k, r in spec.tuning.shared.items() if r.fixed}
    fixed.update(shared or {})
    return TrainConfig(dataset=ds.name, method=m.name, arch=arch, distribution=dist, method_params=hp,
                       dataset_options=dict(ds.options), seed=seed, epochs=ds.epochs, space=m.space,
                       **fixed, **extra)


def load(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a spec file (YAML, safe loading only)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:  # refused before parsing: validation stays linear and fast in the file's size
            raise SpecError(f"{p}: {size / 1e6:.1f} MB is not a study spec (at most {MAX_SPEC_BYTES // 1000} kB)")
        text = p.read_text()
    except OSError as err:
        raise SpecError(f"cannot read spec {p}: {err.strerror or err}") from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # safe; libyaml when there
    except yaml.YAMLError as err:
        raise SpecError(f"{p}: not valid YAML: {str(err).splitlines()[0]}") from None
    return parse(data, source=str(p))


def quickstart_path() -> Path:
    """The packaged quickstart spec (study/studies/quickstart.yaml; studies/quickstart.yaml is a copy)."""
    return Path(__file__).parent / "studies" / "quickstart.yaml"
