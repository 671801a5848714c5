"""Report figures: seeds grouped with mean ± std, accuracy axes that do not zoom one image."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcs.report.collect import RunRecord
from rcs.report.render import (
    MIN_SPAN,
    accuracy_limits,
    group_label,
    groups,
    mean_std,
    plot_robust_vs_time,
    plot_training_curves,
)


def rec(label: str, setup: str, seed: int, secs: float, ra: float, n: int = 128) -> RunRecord:
    return RunRecord(label=label, path=Path(label), method="acl", selector=label.split("_")[0],
                     fraction=0.2, epochs=4, train_seconds=secs, select_seconds=1.0,
                     seed=seed, setup=setup, pretrain_curve=[(1, 5.0), (2, 4.0)],
                     modes={"slf": {"SA": ra + 10, "RA_pgd20": ra, "n_test": n,
                                    "losses": [2.0, 1.5]}})


def test_limits_never_zoom_a_one_image_gap_into_a_cliff():
    lo, hi = accuracy_limits(20.3, 21.1)  # 1 image of 128 apart
    assert hi - lo >= MIN_SPAN and lo <= 20.3 and hi >= 21.1
    assert accuracy_limits(0.0, 0.5)[0] == 0.0
    assert accuracy_limits(99.5, 100.0)[1] == 100.0
    lo, hi = accuracy_limits(10.0, 60.0)
    assert (lo, hi) == pytest.approx((5.0, 65.0))  # a wide range keeps a 10% margin


def test_seeds_of_one_setup_become_one_point_with_their_spread(tmp_path):
    runs = [rec("rcs_s0", "A", 0, 10, 20.0), rec("rcs_s1", "A", 1, 12, 22.0),
            rec("rcs_s2", "A", 2, 14, 27.0), rec("random_s0", "B", 0, 9, 21.0)]
    g = groups(runs)
    assert [len(v) for v in g.values()] == [3, 1]
    assert group_label(list(g.values())[0]) == "acl rcs k=0.2 (3 seeds)"
    assert group_label(list(g.values())[1]) == "random_s0"
    m, sd = mean_std([20.0, 22.0, 27.0])
    assert m == pytest.approx(23.0) and sd == pytest.approx(((9 + 1 + 16) / 2) ** 0.5)
    assert mean_std([5.0]) == (5.0, 0.0)
    pytest.importorskip("matplotlib")
    assert plot_robust_vs_time(runs, tmp_path / "rvt.png").stat().st_size > 0
    assert plot_training_curves(runs, tmp_path / "curves.png").stat().st_size > 0
