"""``qm9``: QM9 (Ramakrishnan et al., 2014) molecular property regression, 11 tasks as in Nash-MTL (Navon et
al., ICML 2022) and the retuned comparisons after it.

Targets: indices 0 1 2 3 5 6 12 13 14 15 11 of the 19 PyTorch Geometric
QM9 targets (mu, alpha, homo, lumo, r2, zpve, U0, U, H, G, cv), standardised
with the training split's mean and std; MAE is reported in the file's
original units. Splits: a fixed permutation (``split_seed``); test = the
first 10,000 molecules, validation = the next 10,000, train = the rest.

No graph library is needed: molecules are read from one documented ``.npz``
(``{root}/qm9.npz``, see docs/data.md; :func:`convert_pyg` writes it from a
torch_geometric copy where that library is installed) and processed as
padded dense graphs. The model is Gilmer et al.'s MPNN as used by Nash-MTL:
an edge network (NNConv, mean aggregation, root weight) + GRU for 3 steps
over the complete graph with edge features (bond type one-hot, distance),
Set2Set readout (3 steps), then Linear + ReLU (shared) and a linear head per
target. Atoms are embedded by element (Nash-MTL uses PyG's 11 hand-made atom
features instead). The edge network is applied without materialising one
``d x d`` matrix per edge (exactly the same function, less memory).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from litmus.errors import DataError

from ..metrics import Accumulator, Regression
from ._paths import data_root
from .base import Benchmark, Defaults, Option, Splits, TensorSplit, register

TARGETS = {"mu": 0, "alpha": 1, "homo": 2, "lumo": 3, "r2": 5, "zpve": 6, "u0": 12, "u": 13, "h": 14, "g": 15, "cv": 11}
ELEMENTS = (0, 1, 6, 7, 8, 9)  # padding, H, C, N, O, F
N_BOND_TYPES = 5  # none, single, double, triple, aromatic
FILE = "qm9.npz"
KEYS = ("z", "pos", "bonds", "y")


def pack(z: np.ndarray, pos: np.ndarray, bonds: np.ndarray) -> Tensor:
    """``[M, A, 4 + A]`` float: atomic number, position, bond-type row (the model's input)."""
    return torch.cat([torch.as_tensor(z, dtype=torch.float32).unsqueeze(-1), torch.as_tensor(pos, dtype=torch.float32),
                      torch.as_tensor(bonds, dtype=torch.float32)], dim=-1)


class DenseMPNN(nn.Module):
    """Embedding + ``steps`` x (edge-network convolution, mean over neighbours + root weight, ReLU, GRU) + Set2Set."""

    def __init__(self, dim: int = 64, steps: int = 3, set2set_steps: int = 3, edge_hidden: int = 128) -> None:
        super().__init__()
        self.dim, self.steps, self.s2s_steps = dim, steps, set2set_steps
        self.out_features = 2 * dim  # the Set2Set output width (read by the multi-column architectures)
        self.embed = nn.Embedding(len(ELEMENTS), dim)
        self.register_buffer("element_index", torch.full((max(ELEMENTS) + 1,), 0, dtype=torch.int64), persistent=False)
        for i, e in enumerate(ELEMENTS):
            self.element_index[e] = i
        self.edge_hidden = nn.Sequential(nn.Linear(N_BOND_TYPES + 1, edge_hidden), nn.ReLU())
        # the edge network's last layer, W(e) = sum_k phi_k(e) B_k + B_0 (kept factorised)
        self.edge_out = nn.Parameter(torch.randn(edge_hidden, dim, dim) / (edge_hidden * dim) ** 0.5)
        self.edge_bias = nn.Parameter(torch.zeros(dim, dim))
        self.root = nn.Linear(dim, dim)
        self.gru = nn.GRUCell(dim, dim)
        self.lstm = nn.LSTMCell(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, a = x.shape[:2]
        z = x[..., 0].round().long()
        atom = z > 0  # [N, A]
        pos, bonds = x[..., 1:4], x[..., 4 : 4 + a].round().long()
        adj = (atom.unsqueeze(2) & atom.unsqueeze(1)) & ~torch.eye(a, dtype=torch.bool, device=x.device)
        dist = torch.cdist(pos, pos).unsqueeze(-1)
        edge = torch.cat([nn.functional.one_hot(bonds.clamp(0, N_BOND_TYPES - 1), N_BOND_TYPES).float(), dist], -1)
        phi = self.edge_hidden(edge) * adj.unsqueeze(-1)  # [N, A, A, K]
        deg = adj.sum(2, keepdim=True).clamp_min(1).float()  # [N, A, 1]
        h = self.embed(self.element_index[z.clamp(0, len(self.element_index) - 1)]) * atom.unsqueeze(-1)
        for _ in range(self.steps):
            s = torch.einsum("nijk,njd->nikd", phi, h)  # [N, A, K, d]
            msg = torch.einsum("nikd,kde->nie", s, self.edge_out) + torch.einsum("nij,njd,de->nie", adj.float(), h, self.edge_bias)
            m = torch.relu(msg / deg + self.root(h))
            h = self.gru(m.reshape(n * a, -1), h.reshape(n * a, -1)).reshape(n, a, -1) * atom.unsqueeze(-1)
        # Set2Set (Vinyals et al., 2016) over the real atoms
        q_star = h.new_zeros(n, 2 * self.dim)
        hc = (h.new_zeros(n, self.dim), h.new_zeros(n, self.dim))
        for _ in range(self.s2s_steps):
            hc = self.lstm(q_star, hc)
            q = hc[0]
            e = (h * q.unsqueeze(1)).sum(-1).masked_fill(~atom, float("-inf"))
            r = (torch.softmax(e, dim=1).unsqueeze(-1) * h).sum(1)
            q_star = torch.cat([q, r], dim=-1)
        return q_star


def _validate(path: Path, data: dict[str, np.ndarray]) -> None:
    for k in KEYS:
        if k not in data:
            raise DataError(f"qm9: {path} has no array {k!r} (expected arrays {', '.join(KEYS)})")
    z, pos, bonds, y = (data[k] for k in KEYS)
    if z.ndim != 2:
        raise DataError(f"qm9: {path}: z has shape {z.shape}, expected [molecules, max_atoms]")
    m, a = z.shape
    for k, arr, want in (("pos", pos, (m, a, 3)), ("bonds", bonds, (m, a, a))):
        if arr.shape != want:
            raise DataError(f"qm9: {path}: {k} has shape {arr.shape}, expected {want}")
    if y.ndim != 2 or y.shape[0] != m or y.shape[1] <= max(TARGETS.values()):
        raise DataError(f"qm9: {path}: y has shape {y.shape}, expected ({m}, 19) (PyG target order)")
    bad = ~np.isin(z, ELEMENTS)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise DataError(f"qm9: {path}: molecule {i} has atomic number {int(z[bad][0])}; expected 0 (padding) or H, C, N, O, F")
    if ((z > 0).sum(1) == 0).any():
        raise DataError(f"qm9: {path}: molecule {int(np.argmax((z > 0).sum(1) == 0))} has no atom")
    if bonds.min() < 0 or bonds.max() >= N_BOND_TYPES:
        raise DataError(f"qm9: {path}: bond types in [{bonds.min()}, {bonds.max()}], expected 0..{N_BOND_TYPES - 1}")
    if not np.isfinite(y[:, list(TARGETS.values())]).all() or not np.isfinite(pos).all():
        raise DataError(f"qm9: {path}: y or pos holds NaN or infinite values")


@register
class QM9(Benchmark):
    name = "qm9"
    description = "QM9: 11 molecular property regressions (dense MPNN; local .npz, needs root)"
    tasks = tuple(TARGETS)
    options = (
        Option("root", None, f"folder holding {FILE} (required; see docs/data.md)"),
        Option("split_seed", 0, "seed of the fixed permutation"),
        Option("n_test", 10000, "test molecules (the first of the permutation)"),
        Option("n_val", 10000, "validation molecules (the next ones)"),
        Option("dim", 64, "hidden width of the MPNN"),
    )
    defaults = Defaults(epochs=300, batch_size=120, lr=1e-3, optimizer="adam")

    def __init__(self, **options: object) -> None:
        self.std = torch.ones(len(TARGETS))
        super().__init__(**options)

    def check(self) -> None:
        o = self.opts
        if o["root"] is None:
            raise DataError(f"qm9 needs the option root: the folder holding {FILE} (see docs/data.md)")
        root = data_root(o["root"])
        if not root.is_dir():
            raise DataError(f"qm9: root {root} does not exist or is not a directory")
        if not (root / FILE).is_file():
            raise DataError(f"qm9: missing {root / FILE} (arrays {', '.join(KEYS)}; convert a torch_geometric copy with "
                            "`python -m trainables.datasets.convert_qm9 PYG_ROOT OUT_DIR`)")
        for k in ("n_test", "n_val", "dim"):
            if not isinstance(o[k], int) or o[k] < 1:
                raise DataError(f"qm9 option {k} must be a positive integer, got {o[k]!r}")

    def load(self) -> Splits:
        path = data_root(self.opts["root"]) / FILE
        try:
            with np.load(path) as f:
                data = {k: f[k] for k in f.files}
        except Exception as err:  # noqa: BLE001
            raise DataError(f"qm9: cannot read {path}: {err}") from err
        _validate(path, data)
        m = len(data["z"])
        n_test, n_val = self.opts["n_test"], self.opts["n_val"]
        if n_test + n_val >= m:
            raise DataError(f"qm9: {path} has {m} molecules, fewer than n_test + n_val + 1 = {n_test + n_val + 1}")
        perm = torch.randperm(m, generator=torch.Generator().manual_seed(self.opts["split_seed"]))
        idx = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
        x = pack(data["z"], data["pos"], data["bonds"])
        y = torch.as_tensor(data["y"][:, list(TARGETS.values())], dtype=torch.float32)
        mean = y[idx["train"]].mean(0)
        std = y[idx["train"]].std(0).clamp_min(1e-12)
        self.mean, self.std = mean, std
        ys = (y - mean) / std
        return Splits(**{s: TensorSplit(x[i], {t: ys[i, k] for k, t in enumerate(TARGETS)}) for s, i in idx.items()})

    def encoder_blocks(self) -> list[nn.Module]:
        d = self.opts["dim"]
        return [DenseMPNN(d), nn.Sequential(nn.Linear(2 * d, d), nn.ReLU())]

    def head(self, task: str) -> nn.Module:
        return nn.Linear(self.opts["dim"], 1)

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(pred.reshape(target.shape), target)

    def accumulators(self) -> dict[str, Accumulator]:
        """MAE in the file's units (the targets are standardised; ``std`` is known after :meth:`load`)."""
        return {t: Regression(scale=float(self.std[k])) for k, t in enumerate(TARGETS)}


def convert_pyg(pyg_root: str | Path, out_dir: str | Path) -> Path:
    """Write ``qm9.npz`` from torch_geometric's QM9 (needs ``torch_geometric``, an optional extra)."""
    try:
        from torch_geometric.datasets import QM9 as PygQM9  # type: ignore[import-not-found]
    except ImportError:
        raise DataError("converting needs torch_geometric (pip install torch_geometric); litmus itself does not") from None
    ds = PygQM9(str(pyg_root))
    a = max(int(d.num_nodes) for d in ds)
    m = len(ds)
    z = np.zeros((m, a), np.int64)
    pos = np.zeros((m, a, 3), np.float32)
    bonds = np.zeros((m, a, a), np.int8)
    y = np.zeros((m, ds[0].y.shape[-1]), np.float64)
    for i, d in enumerate(ds):
        k = int(d.num_nodes)
        z[i, :k] = d.z.numpy()
        pos[i, :k] = d.pos.numpy()
        src, dst = d.edge_index.numpy()
        bonds[i, src, dst] = d.edge_attr[:, :4].argmax(1).numpy() + 1
        y[i] = d.y.reshape(-1).numpy()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / FILE, z=z, pos=pos, bonds=bonds, y=y)
    return out / FILE
