"""GPU placement without GPUs: a two-node Ray cluster whose nodes declare 2 GPUs each; ``resources: {gpu: 0.5}``
packs two trials per GPU. Every trial records its node and the GPU ids Ray assigned (trials table); no GPU ever
holds more than two trials at once, and every declared GPU is used."""

from __future__ import annotations

from collections import defaultdict

import pytest
import ray

import analysis
from study.run import run_study
from study.spec import parse


@pytest.mark.slow
def test_half_gpu_trials_pack_two_per_gpu_on_every_declared_gpu(tmp_path):
    from ray.cluster_utils import Cluster

    # two nodes (the head and one more, each started once), logical CPUs: trials are tiny
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 2})
    cluster.add_node(num_cpus=4, num_gpus=2)
    cluster.wait_for_nodes()
    spec = parse({
        "name": "gpus", "store": str(tmp_path / "store"), "resources": {"cpu": 0.5, "gpu": 0.5},
        "datasets": [{"name": "multi_digits", "options": {"n_train": 200, "n_val": 50, "n_test": 50, "width": 8},
                      "epochs": 1, "train": {"device": "cpu"}}],  # the GPUs are only declared
        "methods": ["ew", {"name": "rlw", "distributions": ["normal"]}],
        "tuning": {"methods": "none"}, "final": {"seeds": 8},
    })
    try:
        res = run_study(spec, address=cluster.address, say=lambda m: None)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert res.counts["completed"] == 16
    trials = analysis.load_trials(spec.store)
    assert len(trials) == 16 and trials["node"].notna().all()
    slots = []  # (node, gpu id) per trial, with its [start, end] in the driver's clock
    for t in trials.itertuples():
        ids = [g for g in str(t.gpu_ids).split(",") if g]
        assert len(ids) == 1, f"a half-GPU trial got GPUs {t.gpu_ids!r}"
        slots.append(((t.node, ids[0]), t.started_at, t.finished_at))
    used = {slot for slot, _, _ in slots}
    assert len({node for node, _ in used}) == 2
    assert len(used) == 4, f"declared 4 GPUs on 2 nodes, used {sorted(used)}"
    by_gpu = defaultdict(list)
    for slot, start, end in slots:
        by_gpu[slot].append((start, end))
    for slot, spans in by_gpu.items():  # at any start, at most two trials of this GPU are running
        for start, _ in spans:
            running = sum(1 for s, e in spans if s <= start < e)
            assert running <= 2, f"GPU {slot} held {running} trials at {start}"
