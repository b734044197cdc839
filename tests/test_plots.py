"""The critical-difference figure: a layout whose lines never cross, drawn only when it can separate."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

import analysis
from analysis import plots, ranks

from analysis_fixtures import SyntheticStudy, make_store


def _segments(ranks_: pd.Series):
    """The elbow of each label as (vertical x, row, side), rows counted downwards."""
    return [(r, row, left) for _, r, row, left in plots._cd_rows(ranks_)]


@pytest.mark.parametrize("k", [2, 3, 5, 8, 11])
def test_cd_layout_lines_never_cross(k):
    rng = pd.Series(range(k), dtype=float).sample(frac=1.0, random_state=k)
    r = pd.Series(1 + rng.to_numpy() * 0.7, index=[f"m{i}" for i in range(k)]).sort_values()
    segs = _segments(r)
    assert len(segs) == k and sum(left for *_, left in segs) == (k + 1) // 2
    for (x1, y1, l1), (x2, y2, l2) in itertools.combinations(segs, 2):
        if l1 != l2:
            continue
        assert y1 != y2  # one label per row and side
        # the lower row's horizontal run reaches the outer edge; it must not pass under a higher row's
        # vertical on the way there: on the left, lower rows lie further right; on the right, further left
        upper, lower = sorted([(x1, y1), (x2, y2)], key=lambda s: s[1])
        if l1:
            assert lower[0] >= upper[0]
        else:
            assert lower[0] <= upper[0]
    # labels on the left are the better (lower) ranks
    assert max(x for x, _, left in segs if left) <= min((x for x, _, left in segs if not left), default=k)


def test_cd_can_separate():
    # 2 datasets: Nemenyi CD exceeds the axis and an exact Wilcoxon p cannot go below 0.5
    for k in (3, 5, 10):
        cd = ranks.critical_difference(k, 2)
        assert cd > k - 1
        assert not plots.cd_can_separate(k, 2, cd, ranks.min_p_wilcoxon(2), k * (k - 1) // 2, 0.05)
    # 10 datasets, 4 variants: CD 1.48 < 3, so the figure can show a difference
    cd = ranks.critical_difference(4, 10)
    assert cd == pytest.approx(1.483, abs=0.01)
    assert plots.cd_can_separate(4, 10, cd, ranks.min_p_wilcoxon(10), 6, 0.05)


def test_report_leaves_out_a_cd_figure_that_cannot_separate(tmp_path):
    effects = {"ew": 0.0, "uw": 0.5, "cagrad": 1.0, "rlw:normal": 0.2}
    store = make_store(tmp_path / "s", SyntheticStudy({d: effects for d in ("a", "b")}, seeds=[0, 1, 2], epochs=2))
    out = tmp_path / "rep"
    analysis.write_report(store, out, n_resamples=100)
    index = (out / "index.md").read_text()
    assert not (out / "figures" / "critical_difference.png").exists()
    assert "no critical-difference figure" in index
    assert (out / "figures" / "delta_m_ci.png").exists()


def test_distributions_figure_groups_by_the_recorded_family(tmp_path, monkeypatch):
    """Which variants the sampling-distribution figure shows comes from the trials table's family column
    (the method registry's), so a plugin's random weighting is drawn and a LOSS+GRAD combination is not."""
    per_seed = pd.DataFrame({"dataset": "a", "delta_m": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                             "variant": ["rlw:normal", "rlw:normal", "myrw:beta", "myrw:beta",
                                         "rlw+cagrad:normal", "rlw+cagrad:normal", "uw", "uw"]})
    family = {"rlw:normal": "random", "myrw:beta": "random", "rlw+cagrad:normal": "gradient", "uw": "loss"}
    drawn = []
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: (drawn.append(fig), real_save(fig, path))[1])
    plots.distributions(per_seed, "a", tmp_path / "d", family)
    (ax,) = drawn[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["myrw:beta", "rlw:normal"]
    assert [list(c.get_offsets()[:, 1]) for c in ax.collections] == [[0.3, 0.4], [0.1, 0.2]]
