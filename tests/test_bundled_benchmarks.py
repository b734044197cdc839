"""The bundled CPU benchmarks: deterministic, disjoint by source image, valid targets."""

from __future__ import annotations

import gzip

import pytest
import torch

from litmus.errors import DataError
from trainables import datasets
from trainables.datasets._digits import _digits, digits_file, read_digits, source_pools
from trainables.datasets.digit_attributes import ATTRIBUTES
from trainables.datasets.multi_digits import compose


def test_registry_lists_bundled_benchmarks() -> None:
    for name in ("multi_digits", "digit_attributes", "scenes"):
        assert name in datasets.names() and datasets.get(name).bundled
    with pytest.raises(ValueError, match="valid: .*multi_digits"):
        datasets.build("nope")


def test_source_pools_are_disjoint_and_cover_the_digits() -> None:
    images, _ = _digits()
    pools = source_pools(0)
    keys = [{tuple(img.flatten().tolist()) for img in pools[s][0]} for s in ("train", "val", "test")]
    n = sum(len(pools[s][0]) for s in pools)
    assert n == len(images)
    # identical source images can repeat inside the digits set itself; pools are disjoint by index,
    # so compare counts: no image object of one pool is the same index as another's
    assert len(keys[0] & keys[2]) < 0.02 * len(keys[2])


def test_the_digits_are_scikit_learns_read_without_importing_it() -> None:
    """The digits come from scikit-learn's bundled file, read directly (no sklearn import in a trial's
    process); they equal what ``sklearn.datasets.load_digits`` returns, value for value."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = _digits()
    assert torch.equal(images, torch.tensor(d.images, dtype=torch.float32) / 16.0)
    assert torch.equal(labels, torch.tensor(d.target, dtype=torch.int64))


@pytest.mark.parametrize("edit,message", [
    (lambda rows: rows[:-1], "expected 1797 lines of 65 values"),
    (lambda rows: rows[:5] + [rows[5] + ",3"] + rows[6:], "not a table of integers"),
    (lambda rows: rows[:5] + [rows[5].replace("0,", "x,", 1)] + rows[6:], "not a table of integers"),
    (lambda rows: rows[:5] + ["17" + rows[5][rows[5].index(","):]] + rows[6:], "outside 0..16"),
    (lambda rows: rows[:-1] + [rows[-1][: rows[-1].rindex(",")] + ",10"], "digits outside 0..9"),
])
def test_a_damaged_digits_file_is_an_error(tmp_path, edit, message) -> None:
    with gzip.open(digits_file(), "rt", newline="") as f:
        rows = f.read().split("\n")[:-1]
    path = tmp_path / "digits.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        f.write("\n".join(edit(rows)) + "\n")
    with pytest.raises(DataError, match=message):
        read_digits(path)
    with gzip.open(path, "wt", newline="") as f:  # the file itself, rewritten, reads back to the same values
        f.write("\n".join(rows) + "\n")
    assert read_digits(path)[0].shape == (1797, 8, 8)


@pytest.mark.parametrize("name", ["multi_digits", "digit_attributes", "scenes"])
def test_generation_is_deterministic_in_data_seed(name: str) -> None:
    opts = {"n_train": 16, "n_val": 8, "n_test": 8}
    a = datasets.build(name, **opts).load()
    b = datasets.build(name, **opts).load()
    c = datasets.build(name, data_seed=1, **opts).load()
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert not torch.equal(a.train.inputs, c.train.inputs)
    for t in datasets.get(name).tasks:
        assert torch.equal(a.test.targets[t], b.test.targets[t])


def test_multi_digits_composition_overlaps_and_labels_match() -> None:
    left = torch.zeros(1, 8, 8)
    right = torch.ones(1, 8, 8)
    img = compose(left, right)
    assert img.shape == (1, 1, 12, 12)
    assert float(img[0, 0, :4, :4].sum()) == 0 and float(img[0, 0, 4:, 4:].sum()) == 64
    s = datasets.build("multi_digits", n_train=50, n_val=10, n_test=10).load()
    assert set(s.train.targets) == {"left", "right"} and int(s.train.targets["left"].max()) <= 9


def test_digit_attributes_targets_follow_the_digit_class() -> None:
    s = datasets.build("digit_attributes", n_train=20, n_val=5, n_test=5).load()
    assert len(datasets.get("digit_attributes").tasks) >= 6
    for t, members in ATTRIBUTES.items():
        assert set(s.train.targets[t].unique().tolist()) <= {0, 1}
    assert ATTRIBUTES["prime"] == frozenset({2, 3, 5, 7})


def test_scenes_targets_are_consistent() -> None:
    s = datasets.build("scenes", n_train=8, n_val=2, n_test=2).load().train
    seg, depth, normal = s.targets["segmentation"], s.targets["depth"], s.targets["normal"]
    invalid = seg == -1
    assert invalid.any()
    assert torch.all(depth[:, 0][invalid] == 0) and torch.all(depth[:, 0][~invalid] > 0)
    norms = normal.norm(dim=1)
    assert torch.allclose(norms[~invalid], torch.ones_like(norms[~invalid]), atol=1e-5)
    assert int(seg.max()) <= 3


@pytest.mark.parametrize("name,opt", [("multi_digits", {"n_train": 0}), ("scenes", {"size": 15}), ("digit_attributes", {"noise": -1})])
def test_bad_options_are_rejected(name: str, opt: dict) -> None:
    with pytest.raises(ValueError, match=name):
        datasets.build(name, **opt)
