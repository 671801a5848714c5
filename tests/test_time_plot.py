"""The one accuracy-vs-time figure: `rcs report` and `rcs compare` hand it their points."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcs.report.collect import RunRecord
from rcs.report.time_plot import Panel, Point, accuracy_limits


def test_panel_limits_hold_every_point_and_bar():
    p = Panel("RA", [Point(10.0, 40.0, "C0", xerr=2.0, yerr=5.0), Point(4.0, 30.0, "C1")])
    (x0, x1), (y0, y1) = p.limits()
    assert x0 == 0.0 and x1 == pytest.approx(1.12 * 12.0)
    assert (y0, y1) == accuracy_limits(30.0, 45.0)
    assert Panel("SA").limits() is None


def _capture(monkeypatch, module: str) -> list:
    import importlib

    seen: list = []
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, "plot_accuracy_vs_time",
                        lambda panels, path, xlabel, title: seen.append(panels) or path)
    return seen


def test_report_figure_is_the_seed_mean_with_bars(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "rcs.report.render")
    from rcs.report.render import plot_robust_vs_time

    def rec(label, seed, secs, ra):
        return RunRecord(label=label, path=Path(label), method="acl", selector="rcs",
                         fraction=0.2, train_seconds=secs, select_seconds=0.0, seed=seed,
                         setup="A", modes={"slf": {"RA_pgd20": ra, "n_test": 100}})

    plot_robust_vs_time([rec("a", 0, 10.0, 20.0), rec("b", 1, 14.0, 24.0)], tmp_path / "x.png")
    (panel,), = seen
    (pt,) = panel.points
    sd = (8 / 1) ** 0.5  # sample std of (20, 24) and of (10, 14)
    assert (pt.x, pt.y, pt.marker) == (12.0, 22.0, "o")
    assert pt.xerr == pytest.approx(sd) and pt.yerr == pytest.approx(sd)
    assert pt.label == "acl rcs k=0.2 (2 seeds), SLF" and not pt.faint


def test_compare_figure_has_faint_runs_and_seed_means(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, "rcs.report.time_plot")
    from rcs.compare.results import plot, summarize

    rows = [{"selector": "rcs", "fraction": 0.5, "seed": s, "pretrain_seconds": t,
             "select_seconds": 1.0, "samples_seen": 10, "SA": sa, "RA": ra}
            for s, t, sa, ra in ((0, 3.0, 60.0, 30.0), (1, 5.0, 62.0, 34.0))]
    plot(rows, summarize(rows), tmp_path / "x.png")
    ra, sa = seen[0]
    assert [p.ylabel for p in (ra, sa)] == ["robust accuracy, PGD-20 (%)", "clean accuracy (%)"]
    faint = [p for p in ra.points if p.faint]
    mean = [p for p in ra.points if not p.faint]
    assert [(p.x, p.y) for p in faint] == [(3.0, 30.0), (5.0, 34.0)]
    assert len(mean) == 1 and (mean[0].x, mean[0].y) == (4.0, 32.0)
    assert mean[0].yerr == pytest.approx(8 ** 0.5) and mean[0].label == "rcs k=0.5"


def test_the_figure_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    from rcs.report.time_plot import plot_accuracy_vs_time

    panels = [Panel("RA", [Point(1.0, 20.0, "C0", label="x"), Point(2.0, 25.0, "C0",
                                                                     faint=True)]),
              Panel("SA", [])]
    out = plot_accuracy_vs_time(panels, tmp_path / "sub" / "f.png", "time (s)", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "sub").glob("*.tmp.png"))
