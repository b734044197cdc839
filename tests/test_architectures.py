"""Cross-stitch, NDDR, MTAN and MMoE: contracts, paper initialisations, and short runs through the trainer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables import architectures, datasets
from trainables.config import TrainConfig
from trainables.datasets.base import Benchmark
from trainables.trainer import Trainer

ARCHS = ("cross_stitch", "nddr", "mtan", "mmoe")
SMALL = {"n_train": 64, "n_val": 16, "n_test": 16}
BUNDLED = ("multi_digits", "digit_attributes", "scenes")


def small_options(ds: str) -> dict:
    opts = dict(SMALL, width=8)
    if ds == "scenes":
        opts["size"] = 16
    return opts


def run(ds: str, arch: str, method: str = "ew", **kw) -> list:
    cfg = TrainConfig(dataset=ds, arch=arch, method=method, epochs=1, max_steps_per_epoch=3, batch_size=16,
                      dataset_options=small_options(ds), **kw)
    return list(Trainer(cfg).epochs())


@pytest.mark.parametrize("ds", BUNDLED)
@pytest.mark.parametrize("arch", ARCHS)
def test_arch_trains_with_ew_on_bundled(ds: str, arch: str) -> None:
    (res,) = run(ds, arch)
    bench = datasets.build(ds, **small_options(ds))
    assert set(res.train_losses) == set(bench.tasks)
    assert all(math.isfinite(v) for v in res.train_losses.values())
    splits = {r["split"] for r in res.rows}
    assert splits == {"train", "val", "test"}
    expected = {(s.task, s.name) for s in bench.metric_specs()}
    got = {(r["task"], r["metric"]) for r in res.rows if r["split"] == "test"}
    assert expected <= got


@pytest.mark.parametrize("arch,method,ds", [
    ("cross_stitch", "pcgrad", "multi_digits"),
    ("nddr", "mgda", "multi_digits"),
    ("mtan", "pcgrad", "scenes"),
    ("mmoe", "mgda", "digit_attributes"),
])
def test_arch_with_gradient_method_in_param_space(arch: str, method: str, ds: str) -> None:
    cfg = TrainConfig(dataset=ds, arch=arch, method=method, space="param", epochs=1, max_steps_per_epoch=2,
                      batch_size=16, dataset_options=small_options(ds))
    tr = Trainer(cfg)
    before = [p.detach().clone() for p in tr.shared]
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, tr.shared)), "shared parameters did not move"


@pytest.mark.parametrize("arch", ARCHS)
def test_rep_space_refused(arch: str) -> None:
    assert architectures.get(arch).supports_rep is False
    with pytest.raises(ValueError, match="single shared representation"):
        Trainer(TrainConfig(dataset="multi_digits", arch=arch, method="mgda_ub", space="rep", dataset_options=SMALL))


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_and_task_parameters_partition_the_model(arch: str) -> None:
    bench = datasets.build("scenes", **small_options("scenes"))
    model = architectures.build(arch, bench)
    shared = {id(p) for p in model.shared_parameters()}
    per_task = [{id(p) for p in model.task_parameters(t)} for t in bench.tasks]
    assert shared and all(per_task)
    for i, a in enumerate(per_task):
        assert not (a & shared)
        for b in per_task[i + 1:]:
            assert not (a & b)
    assert shared.union(*per_task) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_parameters_get_every_tasks_gradient_and_task_parameters_only_their_own(arch: str) -> None:
    bench = datasets.build("multi_digits", **small_options("multi_digits"))
    torch.manual_seed(0)
    model = architectures.build(arch, bench).train()
    x = torch.rand(4, 1, 12, 12)
    for t in bench.tasks:
        model.zero_grad(set_to_none=True)
        model(x)[t].sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters())
        for other in bench.tasks:
            grads = [p.grad for p in model.task_parameters(other)]
            if other == t:
                assert any(g is not None and g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None or g.abs().sum() == 0 for g in grads)


def test_forward_subset_of_tasks() -> None:
    bench = datasets.build("digit_attributes", **small_options("digit_attributes"))
    x = torch.rand(3, 1, 10, 10)
    for arch in ARCHS:
        model = architectures.build(arch, bench).eval()
        out = model(x, ("prime",))
        assert set(out) == {"prime"} and out["prime"].shape == (3, 2)
        full = model(x)
        torch.testing.assert_close(full["prime"], out["prime"])


def test_cross_stitch_initialisation_and_identity_stitch_isolates_tasks() -> None:
    bench = datasets.build("digit_attributes", **small_options("digit_attributes"))
    model = architectures.build("cross_stitch", bench)
    alpha = model.units[0].alpha.detach()
    t = len(bench.tasks)
    assert alpha.shape == (t, t)
    torch.testing.assert_close(alpha.diagonal(), torch.full((t,), 0.9))
    torch.testing.assert_close(alpha.sum(1), torch.ones(t))
    assert torch.allclose(alpha[0, 1], torch.tensor(0.1 / (t - 1)))
    # self_weight 1: no stitching, changing one column leaves the other tasks untouched
    iso = architectures.build("cross_stitch", bench, self_weight=1.0).eval()
    x = torch.rand(2, 1, 10, 10)
    before = iso(x)
    with torch.no_grad():
        for p in iso.columns["even"].parameters():
            p.add_(1.0)
    after = iso(x)
    assert not torch.allclose(before["even"], after["even"])
    torch.testing.assert_close(before["prime"], after["prime"])


def test_cross_stitch_unit_mixes_by_hand() -> None:
    from trainables.architectures.cross_stitch import CrossStitchUnit

    unit = CrossStitchUnit(2, 0.9)
    a, b = torch.ones(2, 3, 4, 4), torch.full((2, 3, 4, 4), 3.0)
    ya, yb = unit([a, b])
    torch.testing.assert_close(ya, torch.full_like(a, 0.9 + 0.3))
    torch.testing.assert_close(yb, torch.full_like(a, 0.1 + 2.7))


@pytest.mark.parametrize("shape", [(5, 6, 4, 4), (5, 6), (5, 7, 6)])
def test_nddr_layer_diagonal_initialisation_any_shape(shape: tuple[int, ...]) -> None:
    from trainables.architectures.nddr import NDDRLayer

    layer = NDDRLayer(6, 2, 0.9, activation=False)
    w = layer.weight[0].detach()
    torch.testing.assert_close(w[:, :6], 0.9 * torch.eye(6))
    torch.testing.assert_close(w[:, 6:], 0.1 * torch.eye(6))
    layer.eval()  # BN with its initial running stats is the identity (up to eps)
    a, b = torch.randn(shape), torch.randn(shape)
    ya, yb = layer([a, b])
    assert ya.shape == a.shape
    scale = 1 / math.sqrt(1 + layer.norms[0].eps)
    torch.testing.assert_close(ya, (0.9 * a + 0.1 * b) * scale)
    torch.testing.assert_close(yb, (0.1 * a + 0.9 * b) * scale)


def test_nddr_rejects_wrong_width() -> None:
    from trainables.architectures.nddr import NDDRLayer

    with pytest.raises(ValueError, match="features"):
        NDDRLayer(6, 2)([torch.randn(2, 5, 3, 3), torch.randn(2, 5, 3, 3)])


def test_mmoe_gates_are_softmax_and_identical_experts_give_the_expert() -> None:
    bench = datasets.build("multi_digits", **small_options("multi_digits"))
    model = architectures.build("mmoe", bench, experts=3).eval()
    state = model.experts[0].state_dict()
    for e in model.experts[1:]:
        e.load_state_dict(state)
    x = torch.rand(4, 1, 12, 12)
    g = torch.softmax(model.gates["left"](model.gate_input(x)), -1)
    torch.testing.assert_close(g.sum(1), torch.ones(4))
    expected = model.heads["left"](model.experts[0](x))
    torch.testing.assert_close(model(x)["left"], expected)


def test_mtan_mask_is_soft_and_shapes_follow_stages() -> None:
    from trainables.architectures.mtan import AttentionModule, match_shape

    mod = AttentionModule(8, 4)
    p, prev = torch.rand(2, 8, 5, 5), torch.rand(2, 4, 10, 10)
    out = mod(p, prev)
    assert out.shape == p.shape
    assert bool(((out >= 0) & (out <= p + 1e-6)).all())  # sigmoid mask in (0, 1) times non-negative p
    assert match_shape(torch.rand(2, 8, 10, 10), p).shape == p.shape
    assert match_shape(torch.rand(2, 8, 2, 2), p).shape == p.shape
    assert match_shape(torch.rand(2, 8, 5, 5), torch.rand(2, 8)).shape == (2, 8)


class _TokenBench(Benchmark):
    """A fake benchmark whose stages output [N, L, C] token features (channels-last mixing)."""

    name = "_tokens_test"
    tasks = ("a", "b")

    def encoder_blocks(self) -> list[nn.Module]:
        return [nn.Sequential(nn.Linear(3, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 6), nn.ReLU())]

    def head(self, task: str) -> nn.Module:
        return nn.Linear(6, 2)

    def head_input(self, rep: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return rep[:, 0]


@pytest.mark.parametrize("arch", ["cross_stitch", "nddr", "mtan"])
def test_three_dimensional_features_are_mixed_channels_last(arch: str) -> None:
    model = architectures.build(arch, _TokenBench())
    out = model(torch.rand(4, 5, 3))
    assert out["a"].shape == (4, 2) and out["b"].shape == (4, 2)
    out["a"].sum().backward()


def test_unknown_and_bad_options() -> None:
    bench = datasets.build("multi_digits", **small_options("multi_digits"))
    for arch in ARCHS:
        with pytest.raises(ValueError, match="unknown option"):
            architectures.build(arch, bench, bogus=1)
    with pytest.raises(ValueError, match="shared"):
        architectures.build("nddr", bench, shared="everything")
    with pytest.raises(ValueError, match="experts"):
        architectures.build("mmoe", bench, experts=0)
    with pytest.raises(ValueError, match="channels"):
        architectures.build("mtan", bench, channels=[1, 2])


def test_units_shared_mode_makes_columns_task_specific() -> None:
    bench = datasets.build("multi_digits", **small_options("multi_digits"))
    model = architectures.build("cross_stitch", bench, shared="units")
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in model.units.parameters()}
    assert {id(p) for p in model.columns["left"].parameters()} <= {id(p) for p in model.task_parameters("left")}
