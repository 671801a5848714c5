"""Tables, summary statistics and the plot of a selector comparison (:mod:`rcs.compare.study`).

* :func:`summarize`: mean and sample standard deviation over seeds per (selector, fraction);
* :func:`markdown`: the per-run table and the mean ± std table;
* :func:`plot`: robust (and clean) accuracy against pretraining time, matplotlib Agg;
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rcs.utils.tables import markdown_table as table


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (ddof = 1; None for a single value) of the non-None
    values, and their count."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        return None, None, 0
    m = sum(v) / len(v)
    if len(v) == 1:
        return m, None, 1
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)), len(v)


SUMMARY_KEYS = ("pretrain_seconds", "select_seconds", "samples_seen", "SA", "RA")


def value(row: dict[str, Any], key: str) -> float | None:
    """A row's metric: a top-level key, or ``RA@<eps>`` from ``row['RA_extra']``."""
    if key.startswith("RA@"):
        return (row.get("RA_extra") or {}).get(key[3:])
    return row.get(key)


def extra_keys(rows: list[dict[str, Any]]) -> list[str]:
    """``RA@<eps>`` of every extra radius some row was evaluated at (first-seen order)."""
    return list(dict.fromkeys(f"RA@{k}" for r in rows for k in (r.get("RA_extra") or {})))


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (selector, fraction): mean / std / n over seeds of the summary keys and
    of every extra robust accuracy."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["selector"], float(r["fraction"])), []).append(r)
    out = []
    for (sel, frac), rs in groups.items():
        entry: dict[str, Any] = {"selector": sel, "fraction": frac,
                                 "seeds": sorted(r["seed"] for r in rs)}
        for k in (*SUMMARY_KEYS, *extra_keys(rows)):
            m, s, n = mean_std([value(r, k) for r in rs])
            entry[k] = {"mean": m, "std": s, "n": n}
        out.append(entry)
    return out


def _f(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ms(d: dict[str, Any], digits: int = 1) -> str:
    if d["mean"] is None:
        return "-"
    return _f(d["mean"], digits) + ("" if d["std"] is None else f" ± {_f(d['std'], digits)}")


def markdown(rows: list[dict[str, Any]], summary: list[dict[str, Any]], mode: str = "slf",
             ra_label: str = "RA PGD-20") -> str:
    """The per-run table and the mean ± std table (accuracies in %, times in seconds)."""
    m = mode.upper()
    extras = extra_keys(rows)
    acc = [f"{m} SA (%)", f"{m} {ra_label} (%)"] + [f"{m} RA PGD-20 @{k[3:]} (%)"
                                                  for k in extras]
    run_head = ["selector", "fraction", "seed", "coreset size", "images seen",
                "pretraining time (s)", "selection time (s)", *acc]
    runs = [[r["selector"], f"{r['fraction']:g}", str(r["seed"]),
             str(r.get("coreset_size") or "-"), str(r["samples_seen"]),
             _f(r["pretrain_seconds"]), _f(r["select_seconds"]), _f(r["SA"], 2),
             _f(r["RA"], 2)] + [_f(value(r, k), 2) for k in extras] for r in rows]
    head = ["selector", "fraction", "seeds", "images seen", "pretraining time (s)",
            "selection time (s)", *acc]
    means = [[e["selector"], f"{e['fraction']:g}", str(len(e["seeds"])),
              _ms(e["samples_seen"], 0), _ms(e["pretrain_seconds"]), _ms(e["select_seconds"]),
              _ms(e["SA"], 2), _ms(e["RA"], 2)] + [_ms(e[k], 2) if k in e else "-"
                                                   for k in extras] for e in summary]
    return "\n".join([table(run_head, runs), "", "Mean ± standard deviation over seeds:", "",
                      table(head, means)])


LABELS = {"full": "full data", "init": "untrained encoder", "warmup": "warm-up only"}


def _label(e: dict[str, Any]) -> str:
    if e["selector"] in LABELS:
        return LABELS[e["selector"]]
    return f"{e['selector']} k={e['fraction']:g}"


def plot(rows: list[dict[str, Any]], summary: list[dict[str, Any]], path: Path,
         ra_label: str = "PGD-20") -> Path:
    """Robust accuracy (first panel; then one per extra radius) and clean accuracy (last)
    against pretraining time: one faint point per run, and the mean ± std over seeds per
    (selector, fraction) with error bars in both directions."""
    from rcs.report.time_plot import Panel, Point, colour, plot_accuracy_vs_time

    selectors = list(dict.fromkeys(r["selector"] for r in rows))
    fractions = sorted({float(r["fraction"]) for r in rows})
    colors = {s: colour(i) for i, s in enumerate(selectors)}
    markers = dict(zip(fractions, "osD^vP*Xh"))
    panels = [("RA", f"robust accuracy, {ra_label} (%)")]
    panels += [(k, f"robust accuracy, PGD-20 @{k[3:]} (%)") for k in extra_keys(rows)]
    panels += [("SA", "clean accuracy (%)")]
    drawn = []
    for key, label in panels:
        runs = [Point(r["pretrain_seconds"], value(r, key), colors[r["selector"]],
                      markers[float(r["fraction"])], faint=True)
                for r in rows if value(r, key) is not None]
        means = [Point(e["pretrain_seconds"]["mean"], e[key]["mean"], colors[e["selector"]],
                       markers[e["fraction"]], xerr=e["pretrain_seconds"]["std"] or 0,
                       yerr=e[key]["std"] or 0, label=_label(e))
                 for e in summary if e.get(key, {}).get("mean") is not None]
        drawn.append(Panel(label, runs + means))
    return plot_accuracy_vs_time(
        drawn, path, "pretraining time: training + selection (s)",
        "equal-budget selector comparison (faint points: runs; markers with bars: mean ± std "
        "over seeds)")


