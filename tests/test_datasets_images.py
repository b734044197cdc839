"""office31, office_home (split-list command, multi-input) and celeba: tiny fixtures in the release layouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables import datasets
from trainables.config import TrainConfig
from trainables.datasets import make_splits
from trainables.datasets.celeba import ATTRIBUTES
from trainables.trainer import Trainer


def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def write_office(root: Path, domains: dict[str, str], classes=("back_pack", "bike", "mug"), per_class: int = 5) -> Path:
    """``domains``: folder name -> sub-path pattern ('' for Office-Home style, 'images' for Office-31)."""
    rng = np.random.default_rng(0)
    for d, sub in domains.items():
        for c in classes:
            for i in range(per_class):
                write_image(root / d / sub / c / f"frame_{i:04d}.jpg", rng)
    return root


@pytest.fixture
def office31(tmp_path: Path) -> Path:
    root = write_office(tmp_path / "office31", {"amazon": "images", "dslr": "images", "webcam": "images"})
    make_splits.make_splits(root)
    return root


def test_make_splits_is_deterministic_stratified_and_consistent(tmp_path: Path) -> None:
    root = write_office(tmp_path / "oh", {"Art": "", "Clipart": "", "Product": "", "Real World": ""},
                        classes=("Alarm_Clock", "Bike"), per_class=5)
    counts = make_splits.make_splits(root)
    assert counts["Art"] == {"train": 6, "val": 2, "test": 2}
    first = {f.name: f.read_text() for f in root.glob("*.txt")}
    assert make_splits.main([str(root)]) == 0
    assert {f.name: f.read_text() for f in root.glob("*.txt")} == first
    assert (root / "Real_World_train.txt").is_file()
    line = (root / "Real_World_test.txt").read_text().splitlines()[0]
    assert line.startswith("Real World/") and line.rsplit(None, 1)[1] in ("0", "1")
    # labels mean the same class in every domain
    for f in root.glob("*_train.txt"):
        for ln in f.read_text().splitlines():
            rel, y = ln.rsplit(None, 1)
            assert ("Alarm_Clock" in rel) == (y == "0")
    # the three splits of a domain are disjoint and cover it
    files = [set(ln.rsplit(None, 1)[0] for ln in (root / f"Art_{s}.txt").read_text().splitlines()) for s in ("train", "val", "test")]
    assert sum(map(len, files)) == len(set().union(*files)) == 10
    assert make_splits.main([str(tmp_path / "missing")]) == 2


def test_office31_trains_multi_input_and_accuracy_matches(office31: Path) -> None:
    opts = {"root": str(office31), "image_size": 32, "pretrained": False}
    cfg = TrainConfig(dataset="office31", dataset_options=opts, epochs=1, batch_size=4, eval_batch_size=4,
                      max_steps_per_epoch=2)
    tr = Trainer(cfg)
    assert tr.bench.multi_input and set(tr.splits.train) == {"amazon", "dslr", "webcam"}
    x, y = tr.splits.train["dslr"][0]
    assert x.shape == (3, 32, 32) and set(y) == {"dslr"} and y["dslr"].dtype == torch.int64
    assert abs(float(x.mean())) < 3  # normalised
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    got = {(r["task"], r["metric"]): r["value"] for r in res.rows if r["split"] == "test"}
    tr.model.eval()
    with torch.no_grad():
        for t, split in tr.splits.test.items():
            xs = torch.stack([split[k][0] for k in range(len(split))])
            ys = torch.tensor([int(split[k][1][t]) for k in range(len(split))])
            acc = float((tr.model(xs, (t,))[t].argmax(1) == ys).double().mean())
            assert got[(t, "accuracy")] == pytest.approx(acc)
    assert tr.model(xs, ("webcam",))["webcam"].shape == (len(xs), 31)


def test_office_home_with_pcgrad_in_param_space(tmp_path: Path) -> None:
    root = write_office(tmp_path / "oh", {"Art": "", "Clipart": "", "Product": "", "Real_World": ""}, per_class=5)
    make_splits.make_splits(root)
    cfg = TrainConfig(dataset="office_home", method="pcgrad", space="param", epochs=1, batch_size=2,
                      max_steps_per_epoch=1, dataset_options={"root": str(root), "image_size": 16, "pretrained": False})
    (res,) = list(Trainer(cfg).epochs())
    assert set(res.train_losses) == {"Art", "Clipart", "Product", "Real_World"}


def test_office_bad_inputs(office31: Path, tmp_path: Path) -> None:
    opts = {"root": str(office31), "image_size": 32, "pretrained": False}
    with pytest.raises(ValueError, match="needs the option root"):
        datasets.build("office31")
    with pytest.raises(ValueError, match="does not exist"):
        datasets.build("office31", root=str(tmp_path / "nope"))
    lst = office31 / "dslr_val.txt"
    good = lst.read_text()
    lst.write_text(good + "dslr/images/mug/frame_0000.jpg 31\n")
    with pytest.raises(ValueError, match=r"dslr_val\.txt, line \d+: label 31 out of range"):
        datasets.build("office31", **opts).load()
    lst.write_text(good + "dslr/images/mug/nothere.jpg 2\n")
    with pytest.raises(ValueError, match=r"dslr_val\.txt.*nothere\.jpg does not exist"):
        datasets.build("office31", **opts).load()
    lst.write_text(good + "justonefield\n")
    with pytest.raises(ValueError, match=r"dslr_val\.txt, line \d+: expected"):
        datasets.build("office31", **opts).load()
    lst.unlink()
    with pytest.raises(ValueError, match=r"missing split list .*dslr_val\.txt"):
        datasets.build("office31", **opts)


# --- CelebA ------------------------------------------------------------------

def write_celeba(root: Path, n: int = 8) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    vals = rng.choice([-1, 1], size=(n, 40))
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    for f in files:
        write_image(root / "img_align_celeba" / f, rng, (18, 22))
    lines = [str(n), " ".join(ATTRIBUTES)] + [f + "  " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, vals)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    part = [0] * (n - 3) + [1, 1, 2]
    (root / "list_eval_partition.txt").write_text("\n".join(f"{f} {p}" for f, p in zip(files, part)) + "\n")
    return root, vals


def test_celeba_trains_and_targets_match_file(tmp_path: Path) -> None:
    root, vals = write_celeba(tmp_path / "celeba")
    cfg = TrainConfig(dataset="celeba", arch="hps", dataset_options={"root": str(root), "image_size": 16},
                      epochs=1, batch_size=2, eval_batch_size=4, max_steps_per_epoch=2)
    tr = Trainer(cfg)
    assert len(tr.bench.tasks) == 40
    assert (len(tr.splits.train), len(tr.splits.val), len(tr.splits.test)) == (5, 2, 1)
    x, y = tr.splits.test[0]
    assert x.shape == (3, 16, 16)
    assert [int(y[a]) for a in ATTRIBUTES] == [(v + 1) // 2 for v in vals[-1]]
    (res,) = list(tr.epochs())
    accs = [r for r in res.rows if r["split"] == "test" and r["metric"] == "accuracy"]
    assert len(accs) == 40 and all(r["value"] in (0.0, 1.0) for r in accs)  # one test image
    tr.model.eval()
    with torch.no_grad():
        out = tr.model(x.unsqueeze(0))
    for r in accs:
        assert r["value"] == float(int(out[r["task"]].argmax(1)) == int(y[r["task"]]))


def test_celeba_bad_inputs(tmp_path: Path) -> None:
    root, _ = write_celeba(tmp_path / "celeba")
    attr = root / "list_attr_celeba.txt"
    good = attr.read_text()
    attr.write_text(good.replace(" 1", " 2", 1))
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt, line 3: attribute value '2'"):
        datasets.build("celeba", root=str(root)).load()
    attr.write_text("9\n" + good.split("\n", 1)[1])
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt: line 1 says 9 images"):
        datasets.build("celeba", root=str(root)).load()
    attr.write_text(good)
    (root / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(ValueError, match=r"000002\.jpg"):
        datasets.build("celeba", root=str(root)).load()
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(ValueError, match=r"missing .*list_eval_partition\.txt"):
        datasets.build("celeba", root=str(root))


def test_celeba_with_cross_stitch_columns(tmp_path: Path) -> None:
    """A parameter-free last stage (global pooling) keeps the previous stage's width for the mixing units."""
    root, _ = write_celeba(tmp_path / "celeba")
    from trainables import architectures

    model = architectures.build("mtan", datasets.build("celeba", root=str(root), image_size=16))
    assert model.widths[-2:] == [512, 512]
    out = model.eval()(torch.rand(2, 3, 16, 16), ("Male", "Young"))
    assert out["Male"].shape == (2, 2)
