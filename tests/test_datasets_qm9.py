"""qm9: a tiny .npz in the documented layout, the dense MPNN's exactness and invariances, MAE in original units."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables import datasets
from trainables.config import TrainConfig
from trainables.datasets import qm9
from trainables.trainer import Trainer

A = 6


def write_qm9(root: Path, m: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    z = np.zeros((m, A), np.int64)
    pos = np.zeros((m, A, 3), np.float32)
    bonds = np.zeros((m, A, A), np.int8)
    for i in range(m):
        k = int(rng.integers(2, A + 1))
        z[i, :k] = rng.choice([1, 6, 7, 8, 9], k)
        pos[i, :k] = rng.normal(size=(k, 3))
        for j in range(k - 1):
            bonds[i, j, j + 1] = bonds[i, j + 1, j] = rng.integers(1, 5)
    y = rng.normal(size=(m, 19)) * np.arange(1, 20) + np.arange(19)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "qm9.npz", z=z, pos=pos, bonds=bonds, y=y)
    return root


OPTS = {"n_test": 6, "n_val": 6, "dim": 8}


def test_qm9_trains_and_mae_is_in_original_units(tmp_path: Path) -> None:
    root = write_qm9(tmp_path / "qm9")
    cfg = TrainConfig(dataset="qm9", dataset_options={"root": str(root), **OPTS}, epochs=1, batch_size=8,
                      max_steps_per_epoch=2)
    tr = Trainer(cfg)
    assert len(tr.bench.tasks) == 11 and (len(tr.splits.train), len(tr.splits.val), len(tr.splits.test)) == (18, 6, 6)
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    raw = np.load(root / "qm9.npz")["y"][:, list(qm9.TARGETS.values())]
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    test_idx, train_idx = perm[:6].numpy(), perm[12:].numpy()
    mean, std = raw[train_idx].mean(0), raw[train_idx].std(0, ddof=1)
    # standardised targets
    np.testing.assert_allclose(tr.splits.test.targets["homo"].numpy(), (raw[test_idx, 2] - mean[2]) / std[2], rtol=1e-5)
    tr.model.eval()
    with torch.no_grad():
        out = tr.model(tr.splits.test.inputs)
    got = {r["task"]: r["value"] for r in res.rows if r["split"] == "test" and r["metric"] == "mae"}
    for k, t in enumerate(qm9.TARGETS):
        pred = out[t].reshape(-1).double().numpy() * std[k] + mean[k]
        assert got[t] == pytest.approx(np.abs(pred - raw[test_idx, k]).mean(), rel=1e-4)


def _naive_messages(mp: qm9.DenseMPNN, x: torch.Tensor) -> torch.Tensor:
    """First message-passing step with one explicit d x d matrix per edge (PyG NNConv, mean aggregation)."""
    n, a = x.shape[:2]
    z = x[..., 0].round().long()
    atom = z > 0
    h = mp.embed(mp.element_index[z]) * atom.unsqueeze(-1)
    out = torch.zeros(n, a, mp.dim)
    for b in range(n):
        for i in range(a):
            if not atom[b, i]:
                continue
            acc, cnt = torch.zeros(mp.dim), 0
            for j in range(a):
                if j == i or not atom[b, j]:
                    continue
                e = torch.cat([torch.nn.functional.one_hot(x[b, i, 4 + j].round().long(), 5).float(),
                               (x[b, i, 1:4] - x[b, j, 1:4]).norm().reshape(1)])
                phi = mp.edge_hidden(e)
                w = torch.einsum("k,kde->de", phi, mp.edge_out) + mp.edge_bias
                acc = acc + h[b, j] @ w
                cnt += 1
            out[b, i] = torch.relu(acc / max(cnt, 1) + mp.root(h[b, i]))
    return out


def test_factorised_edge_network_equals_per_edge_matrices(tmp_path: Path) -> None:
    root = write_qm9(tmp_path / "qm9", m=14)
    split = datasets.build("qm9", root=str(root), n_test=2, n_val=2, dim=4).load().test
    torch.manual_seed(0)
    mp = qm9.DenseMPNN(dim=4, steps=1, edge_hidden=6)
    x = split.inputs
    expected = _naive_messages(mp, x)
    captured = {}
    mp.gru.register_forward_hook(lambda mod, inp, out: captured.setdefault("m", inp[0]))
    mp(x)
    atom = (x[..., 0] > 0).reshape(-1)
    torch.testing.assert_close(captured["m"][atom], expected.reshape(-1, 4)[atom], rtol=1e-4, atol=1e-5)


def test_mpnn_is_invariant_to_atom_order_and_padding(tmp_path: Path) -> None:
    root = write_qm9(tmp_path / "qm9", m=14)
    x = datasets.build("qm9", root=str(root), n_test=2, n_val=2).load().train.inputs[:3]
    torch.manual_seed(0)
    mp = qm9.DenseMPNN(dim=8).eval()
    ref = mp(x)
    p = torch.randperm(A)
    xp = x[:, p].clone()
    xp[..., 4:] = xp[..., 4:][..., p]
    torch.testing.assert_close(mp(xp), ref, rtol=1e-4, atol=1e-5)
    pad = torch.zeros(3, A + 2, 4 + A + 2)
    pad[:, :A, :4] = x[..., :4]
    pad[:, :A, 4 : 4 + A] = x[..., 4:]
    torch.testing.assert_close(mp(pad), ref, rtol=1e-4, atol=1e-5)


def test_qm9_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the option root"):
        datasets.build("qm9")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"missing .*qm9\.npz"):
        datasets.build("qm9", root=str(empty))
    root = write_qm9(tmp_path / "qm9")
    f = np.load(root / "qm9.npz")
    arrays = {k: f[k] for k in f.files}

    def bad(match: str, **change: np.ndarray) -> None:
        data = {**arrays, **change}
        np.savez(root / "qm9.npz", **{k: v for k, v in data.items() if v is not None})
        with pytest.raises(ValueError, match=match):
            datasets.build("qm9", root=str(root), **OPTS).load()

    bad(r"qm9\.npz: pos has shape \(30, 6, 2\)", pos=arrays["pos"][..., :2])
    z = arrays["z"].copy()
    z[3, 0] = 17
    bad(r"qm9\.npz: molecule 3 has atomic number 17", z=z)
    bad(r"qm9\.npz has no array 'bonds'", bonds=None)
    bad(r"qm9\.npz: y has shape \(30, 10\)", y=arrays["y"][:, :10])
    np.savez(root / "qm9.npz", **arrays)
    with pytest.raises(ValueError, match="has 30 molecules"):
        datasets.build("qm9", root=str(root), n_test=20, n_val=10).load()


@pytest.mark.parametrize("arch", ["cross_stitch", "nddr", "mtan"])
def test_qm9_with_multi_column_architectures(tmp_path: Path, arch: str) -> None:
    root = write_qm9(tmp_path / "qm9")
    cfg = TrainConfig(dataset="qm9", arch=arch, dataset_options={"root": str(root), **OPTS}, epochs=1, batch_size=8,
                      max_steps_per_epoch=1)
    tr = Trainer(cfg)
    before = [p.detach().clone() for p in tr.shared]
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, tr.shared)), "the shared parameters did not move"
    # the reported test MAE is the trained model's, in the targets' original units
    raw = np.load(root / "qm9.npz")["y"][:, list(qm9.TARGETS.values())]
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    test_idx, train_idx = perm[:6].numpy(), perm[12:].numpy()
    mean, std = raw[train_idx].mean(0), raw[train_idx].std(0, ddof=1)
    tr.model.eval()
    with torch.no_grad():
        out = tr.model(tr.splits.test.inputs)
    got = {r["task"]: r["value"] for r in res.rows if r["split"] == "test" and r["metric"] == "mae"}
    for k, t in enumerate(qm9.TARGETS):
        pred = out[t].reshape(-1).double().numpy() * std[k] + mean[k]
        assert got[t] == pytest.approx(np.abs(pred - raw[test_idx, k]).mean(), rel=1e-4)
