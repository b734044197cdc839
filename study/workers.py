"""Plugins on every Ray worker: the job's runtime environment, and a check that each node imports them.

Plugin files and local packages travel with the job (Ray's runtime environment ``py_modules``),
so workers import them under the same module names as the driver. Installed plugins (entry
points, site-packages modules) must be installed on every node: :func:`check_nodes` imports
every plugin module once on each alive node before the first trial, and names the module and
the node that cannot.
"""

from __future__ import annotations

from typing import Any

from trainables import plugins

from litmus.errors import PluginNodeError  # noqa: F401 - part of this module's interface

from .spec import Spec


def spec_plugins(spec: Spec) -> list[plugins.Plugin]:
    """The spec's plugins (already imported by the spec's parser: cached here)."""
    return plugins.load(spec.plugins)


def runtime_env(spec: Spec) -> dict[str, Any] | None:
    """``{"py_modules": [...]}`` with the spec's plugin files and local packages, or None without any."""
    ship = sorted({p.ship for p in spec_plugins(spec) if p.ship})
    return {"py_modules": ship} if ship else None


def worker_modules(spec: Spec) -> list[str]:
    """Module names a trial imports before it builds its method and dataset."""
    return [p.module for p in spec_plugins(spec)]


def _probe_modules(spec: Spec) -> list[str]:
    entry = [p.module for p in plugins.load_entry_points()]
    return sorted(set(entry + worker_modules(spec)))


def check_nodes(spec: Spec) -> None:
    """Import every plugin module on every alive node (a zero-CPU task pinned to it); raise on the first failure."""
    modules = _probe_modules(spec)
    if not modules:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def probe(names: list[str]) -> tuple[str, list[str]]:
        import importlib
        import socket

        errors = []
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as err:  # noqa: BLE001 - reported to the driver with the module and node
                errors.append(f"{name}: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")
        return socket.gethostname(), errors

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [(n, probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
             .remote(modules)) for n in nodes]
    for node, ref in refs:
        host, errors = ray.get(ref, timeout=300)
        if errors:
            raise PluginNodeError(f"plugin module {errors[0]} on node {node.get('NodeManagerAddress')} ({host}); "
                                  f"install it (and what it imports) there, or name it in the spec's plugins as a file or local package")
