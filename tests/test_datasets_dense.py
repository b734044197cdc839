"""nyuv2 and cityscapes: tiny fixtures in the preprocessed .npy layout, trained through the trainer; bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables import datasets
from trainables.config import TrainConfig
from trainables.datasets import _dense
from trainables.trainer import Trainer

H, W = 16, 24


def write_dense(root: Path, tasks: tuple[str, ...], classes: int, n_train: int = 6, n_val: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for folder in ("image",) + tuple(_dense.TASK_FOLDER[t] for t in tasks):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", rng.random((H, W, 3)).astype(np.float32))
            lab = rng.integers(-1, classes, (H, W)).astype(np.float32)
            np.save(root / split / "label" / f"{i}.npy", lab)
            dep = rng.uniform(0.5, 5.0, (H, W, 1)).astype(np.float32)
            dep[:3, :3] = 0.0  # invalid
            np.save(root / split / "depth" / f"{i}.npy", dep)
            if "normal" in tasks:
                nor = rng.normal(size=(H, W, 3)).astype(np.float32)
                nor /= np.linalg.norm(nor, axis=2, keepdims=True)
                nor[:2] = 0.0  # invalid
                np.save(root / split / "normal" / f"{i}.npy", nor)
    return root


def opts(root: Path, **kw) -> dict:
    return dict(root=str(root), backbone="resnet18", head_channels=8, **kw)


@pytest.fixture
def nyu(tmp_path: Path) -> Path:
    return write_dense(tmp_path / "nyuv2", ("segmentation", "depth", "normal"), 13)


def _hand_metrics(model, bench, split) -> dict[tuple[str, str], float]:
    """Metrics recomputed in numpy from the model's test predictions (the definitions of docs/data.md)."""
    preds: dict[str, list] = {t: [] for t in bench.tasks}
    gts: dict[str, list] = {t: [] for t in bench.tasks}
    model.eval()
    with torch.no_grad():
        for k in range(len(split)):
            x, y = split[k]
            out = model(x.unsqueeze(0))
            for t in bench.tasks:
                preds[t].append(out[t][0].numpy())
                gts[t].append(y[t].numpy())
    res = {}
    c = bench.num_classes
    p = np.stack([a.argmax(0) for a in preds["segmentation"]]).ravel()
    g = np.stack(gts["segmentation"]).ravel()
    keep = g >= 0
    cm = np.zeros((c, c))
    np.add.at(cm, (g[keep], p[keep]), 1)
    ious = [cm[i, i] / (cm[i].sum() + cm[:, i].sum() - cm[i, i]) for i in range(c) if cm[i].sum() + cm[:, i].sum() > 0]
    res[("segmentation", "miou")] = float(np.mean(ious))
    res[("segmentation", "pixel_acc")] = float(np.trace(cm) / cm.sum())
    dp, dg = np.stack(preds["depth"]).ravel(), np.stack(gts["depth"]).ravel()
    v = dg > 0
    res[("depth", "abs_err")] = float(np.abs(dp[v] - dg[v]).mean())
    res[("depth", "rel_err")] = float((np.abs(dp[v] - dg[v]) / dg[v]).mean())
    if "normal" in bench.tasks:
        npred = np.stack(preds["normal"]).transpose(0, 2, 3, 1).reshape(-1, 3)
        ngt = np.stack(gts["normal"]).transpose(0, 2, 3, 1).reshape(-1, 3)
        v = np.abs(ngt).sum(1) > 0
        unit = npred[v] / np.maximum(np.linalg.norm(npred[v], axis=1, keepdims=True), 1e-12)
        ang = np.degrees(np.arccos(np.clip((unit * ngt[v]).sum(1), -1, 1)))
        res[("normal", "mean_angle")] = float(ang.mean())
        res[("normal", "within_11.25")] = float((ang < 11.25).mean())
        res[("normal", "within_30")] = float((ang < 30).mean())
    return res


def test_nyuv2_trains_and_metrics_match_hand_computation(nyu: Path) -> None:
    cfg = TrainConfig(dataset="nyuv2", dataset_options=opts(nyu, augment=True, val_fraction=0.34), epochs=1,
                      batch_size=2, eval_batch_size=2, max_steps_per_epoch=2)
    tr = Trainer(cfg)
    assert (len(tr.splits.train), len(tr.splits.val), len(tr.splits.test)) == (4, 2, 3)
    x, y = tr.splits.test[0]
    assert x.shape == (3, H, W) and y["segmentation"].shape == (H, W) and y["segmentation"].dtype == torch.int64
    assert y["depth"].shape == (1, H, W) and y["normal"].shape == (3, H, W)
    out = tr.model.eval()(x.unsqueeze(0))
    assert out["segmentation"].shape == (1, 13, H, W) and out["depth"].shape == (1, 1, H, W)
    assert out["normal"].shape == (1, 3, H, W)
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    got = {(r["task"], r["metric"]): r["value"] for r in res.rows if r["split"] == "test"}
    for key, value in _hand_metrics(tr.model, tr.bench, tr.splits.test).items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    # the losses are the scenes ones: hand-check depth L1 on valid pixels
    pred = torch.zeros(1, 1, H, W)
    tgt = y["depth"].unsqueeze(0)
    assert float(tr.bench.loss("depth", pred, tgt)) == pytest.approx(float(tgt[tgt > 0].mean()))


def test_validation_split_is_carved_from_train_deterministically(nyu: Path) -> None:
    a = datasets.build("nyuv2", **opts(nyu, val_fraction=0.5)).load()
    b = datasets.build("nyuv2", **opts(nyu, val_fraction=0.5)).load()
    assert a.val.ids == b.val.ids and len(a.val) == 3
    assert not set(a.val.ids) & set(a.train.ids)
    assert a.val.root == a.train.root == nyu / "train" and a.test.root == nyu / "val"
    c = datasets.build("nyuv2", **opts(nyu, val_fraction=0.5, split_seed=3)).load()
    assert sorted(c.val.ids + c.train.ids) == sorted(a.val.ids + a.train.ids)


def test_augmentation_scales_depth_and_flips_normal_x() -> None:
    image = torch.arange(3 * 12 * 12, dtype=torch.float32).reshape(3, 12, 12)
    targets = {"segmentation": torch.arange(144).reshape(12, 12) % 5, "depth": torch.full((1, 12, 12), 3.0),
               "normal": torch.tensor([0.6, 0.0, 0.8]).view(3, 1, 1).expand(3, 12, 12).clone()}
    img2, t2 = _dense.scale_crop_flip(image, targets, 1.5, 2, 4, flip=True)
    assert img2.shape == image.shape and t2["segmentation"].dtype == torch.int64
    torch.testing.assert_close(t2["depth"], torch.full((1, 12, 12), 2.0))  # 3 / 1.5
    torch.testing.assert_close(t2["normal"][:, 0, 0], torch.tensor([-0.6, 0.0, 0.8]))
    # nearest crop of an 8x8 window at (2, 4), flipped: the top-right output pixel is the window's top-left
    assert int(t2["segmentation"][0, -1]) == int(targets["segmentation"][2, 4])
    assert float(img2[0, 0, -1]) == pytest.approx(float(image[0, 2, 4]))
    same, t3 = _dense.scale_crop_flip(image, targets, 1.0, 0, 0, flip=False)
    assert torch.equal(same, image) and torch.equal(t3["depth"], targets["depth"])
    # the random version is reproducible from torch's RNG (which the trainer seeds)
    a = _dense.augment(image, targets, torch.Generator().manual_seed(3))
    b = _dense.augment(image, targets, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and all(torch.equal(a[1][k], b[1][k]) for k in targets)


def test_cityscapes_trains_with_mtan(tmp_path: Path) -> None:
    root = write_dense(tmp_path / "cs", ("segmentation", "depth"), 7)
    cfg = TrainConfig(dataset="cityscapes", arch="mtan", dataset_options=opts(root), epochs=1, batch_size=2,
                      eval_batch_size=3, max_steps_per_epoch=1)
    tr = Trainer(cfg)
    assert tr.bench.tasks == ("segmentation", "depth")
    (res,) = list(tr.epochs())
    got = {(r["task"], r["metric"]) for r in res.rows if r["split"] == "test"}
    assert {("segmentation", "miou"), ("depth", "abs_err")} <= got
    assert tr.model(tr.splits.test[0][0].unsqueeze(0))["segmentation"].shape == (1, 7, H, W)


def test_pretrained_state_dict_is_loaded(nyu: Path, tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(5)
    ref = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    bench = datasets.build("nyuv2", **opts(nyu, weights=str(path)))
    stem = bench.encoder_blocks()[0]
    torch.testing.assert_close(stem[0].weight, ref.conv1.weight)
    with pytest.raises(ValueError, match="does not exist"):
        datasets.build("nyuv2", **opts(nyu, weights=str(tmp_path / "none.pth")))
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pth"):
        datasets.build("nyuv2", **opts(nyu, weights=str(bad))).encoder_blocks()


def test_bad_inputs_name_the_file(nyu: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the option root"):
        datasets.build("nyuv2")
    with pytest.raises(ValueError, match="does not exist"):
        datasets.build("nyuv2", root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="backbone"):
        datasets.build("nyuv2", **{**opts(nyu), "backbone": "vgg"})
    # missing file
    (nyu / "train" / "depth" / "2.npy").unlink()
    with pytest.raises(ValueError, match=r"depth[/\\]2\.npy"):
        datasets.build("nyuv2", **opts(nyu)).load()
    np.save(nyu / "train" / "depth" / "2.npy", np.ones((H, W, 1), np.float32))
    # wrong shape
    np.save(nyu / "val" / "normal" / "1.npy", np.ones((H, W, 2), np.float32))
    with pytest.raises(ValueError, match=r"normal[/\\]1\.npy.*expected \(16, 24, 3\)"):
        datasets.build("nyuv2", **opts(nyu)).load()
    np.save(nyu / "val" / "normal" / "1.npy", np.ones((H, W, 3), np.float32))
    # inconsistent image size
    np.save(nyu / "val" / "image" / "0.npy", np.ones((H, W + 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"image[/\\]\d\.npy"):
        datasets.build("nyuv2", **opts(nyu)).load()
    np.save(nyu / "val" / "image" / "0.npy", np.ones((H, W, 3), np.float32))
    # out-of-range label
    lab = np.zeros((H, W), np.float32)
    lab[0, 0] = 13
    np.save(nyu / "train" / "label" / "4.npy", lab)
    with pytest.raises(ValueError, match=r"label[/\\]4\.npy.*\[0, 12\]"):
        datasets.build("nyuv2", **opts(nyu)).load()
    # missing folder: check() fails before training
    import shutil

    shutil.rmtree(nyu / "val" / "normal")
    with pytest.raises(ValueError, match=r"val[/\\]normal"):
        Trainer(TrainConfig(dataset="nyuv2", dataset_options=opts(nyu)))


@pytest.mark.parametrize("arch,method,space", [("hps", "mgda_ub", "rep"), ("nddr", "pcgrad", "param")])
def test_nyuv2_with_gradient_methods(nyu: Path, arch: str, method: str, space: str) -> None:
    cfg = TrainConfig(dataset="nyuv2", arch=arch, method=method, space=space, epochs=1, batch_size=2,
                      eval_batch_size=3, max_steps_per_epoch=1,
                      dataset_options=opts(nyu, val_fraction=0.2, augment=True))
    tr = Trainer(cfg)
    before = [p.detach().clone() for p in tr.shared]
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, tr.shared)), "the shared parameters did not move"
    got = {(r["task"], r["metric"]): r["value"] for r in res.rows if r["split"] == "test"}
    for key, value in _hand_metrics(tr.model, tr.bench, tr.splits.test).items():  # the trained model's own metrics
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
