"""Greedy rounds of RCS, pure over arrays and callbacks (so brute force can check them).

With budget ``n`` samples and ``R`` rounds, round ``r`` has a target of ``m = ceil(n / R)``
samples (the last round takes the remainder, so the targets sum to exactly ``n``; with
``ceil`` there can be fewer than ``R`` rounds, e.g. n=5, R=4 -> 2, 2, 1). Each round:

1. ``search(q, k, excluded)`` returns the top-``k`` not yet chosen units by gain ``<g_x, q>``;
2. the units are added in gain order until the cumulative target is reached;
3. ``update(r, picked)`` moves the head one step on the picks and returns the new ``q``
   (not called after the last round: that update could not change the result).

A unit is one sample (granularity ``sample``: exactly ``m`` picks per round) or a whole minibatch
(granularity ``batch``: ``unit_sizes`` gives each batch's size; a round adds batches until the
running total reaches its cumulative target). Since whole batches may overshoot ``n``, the last
picked batch is trimmed (``GreedyResult.trim`` members dropped from its end) so the coreset has
exactly ``n`` samples. The round gain recorded is the **sum** of the first-order gains of its
picks (``mean_gains`` holds the per-pick mean).

Quotas (sample granularity): with ``groups`` (a group id per unit, e.g. its class) and
``quotas`` (picks allowed per group id, summing to ``n``), a round takes the best units in gain
order whose group still has room, skipping the others, and a group is closed to later rounds
once full; the coreset then holds exactly ``quotas[g]`` units of each group ``g``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SearchFn = Callable[[np.ndarray, int, np.ndarray], tuple[np.ndarray, np.ndarray]]
UpdateFn = Callable[[int, np.ndarray], np.ndarray]


def round_sizes(n: int, rounds: int) -> list[int]:
    """Per-round targets: ``ceil(n/rounds)`` each, the remainder last; sums to exactly ``n``."""
    if n <= 0 or rounds <= 0:
        raise ValueError(f"need n > 0 and rounds > 0, got n={n}, rounds={rounds}")
    m = math.ceil(n / min(rounds, n))
    sizes = [m] * (n // m)
    if n % m:
        sizes.append(n % m)
    return sizes


@dataclass
class GreedyResult:
    picks: list[np.ndarray] = field(default_factory=list)
    """Unit ids picked in each round, in gain order."""
    gains: list[float] = field(default_factory=list)
    """Sum of the picks' first-order gains <g_x, q_U> per round."""
    mean_gains: list[float] = field(default_factory=list)
    trim: int = 0
    """Members dropped from the end of the last picked unit (batch granularity)."""

    @property
    def units(self) -> np.ndarray:
        """All picked unit ids, in pick order."""
        return np.concatenate(self.picks) if self.picks else np.empty(0, np.int64)


def greedy_rounds(num_units: int, budget: int, rounds: int, q0: np.ndarray,
                  search: SearchFn, update: UpdateFn,
                  unit_sizes: np.ndarray | None = None, groups: np.ndarray | None = None,
                  quotas: np.ndarray | None = None) -> GreedyResult:
    """Run the greedy rounds; ``budget`` counts samples (see the module docstring)."""
    sizes = None if unit_sizes is None else np.asarray(unit_sizes, dtype=np.int64)
    if groups is not None:
        if sizes is not None or quotas is None:
            raise ValueError("group quotas need sample granularity and a quota per group")
        groups = np.asarray(groups, dtype=np.int64)
        room = np.asarray(quotas, dtype=np.int64).copy()
        if int(room.sum()) != budget or (np.bincount(groups, minlength=len(room))[:len(room)]
                                         < room).any():
            raise ValueError("quotas must sum to the budget and not exceed any group's size")
    total_available = num_units if sizes is None else int(sizes.sum())
    if budget > total_available:
        raise ValueError(f"budget {budget} exceeds the {total_available} candidates")
    targets = np.cumsum(round_sizes(budget, rounds))
    excluded = np.zeros(num_units, dtype=bool)
    res = GreedyResult()
    q, total = np.asarray(q0, dtype=np.float32), 0
    for r, target in enumerate(targets):
        need = int(target - total)
        if need <= 0:  # an earlier whole batch already covered this round
            res.picks.append(np.empty(0, np.int64))
            res.gains.append(0.0)
            res.mean_gains.append(0.0)
            continue
        if groups is not None:
            ids, scores = _search_with_quotas(search, q, need, excluded, groups, room)
            total += need
        elif sizes is None:
            ids, scores = search(q, need, excluded)
            if len(ids) != need:
                raise RuntimeError(f"search returned {len(ids)} ids, {need} were asked for")
            total += need
        else:
            k = int(math.ceil(need / max(1, int(sizes[~excluded].min()))))
            ids, scores = search(q, k, excluded)
            counts = np.cumsum(sizes[ids])
            take = int(np.searchsorted(counts, need)) + 1  # first prefix reaching `need`
            ids, scores = ids[:take], scores[:take]
            total += int(counts[min(take, len(counts)) - 1])
        excluded[ids] = True
        if groups is not None:
            room -= np.bincount(groups[ids], minlength=len(room))
            excluded |= room[groups] == 0  # full groups are closed to later rounds
        res.picks.append(np.asarray(ids, dtype=np.int64))
        res.gains.append(float(np.sum(scores, dtype=np.float64)))
        res.mean_gains.append(float(np.mean(scores, dtype=np.float64)))
        if r < len(targets) - 1:
            q = np.asarray(update(r, res.picks[-1]), dtype=np.float32)
    res.trim = total - budget
    return res


def _search_with_quotas(search: SearchFn, q: np.ndarray, need: int, excluded: np.ndarray,
                        groups: np.ndarray, room: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``need`` best units by gain whose group has room (room counted within the round)."""
    available = int((~excluded).sum())
    k = min(need, available)
    while True:
        ids, scores = search(q, k, excluded)
        left, take = room.copy(), []
        for j, u in enumerate(ids):
            if left[groups[u]] > 0:
                left[groups[u]] -= 1
                take.append(j)
                if len(take) == need:
                    return ids[take], scores[take]
        if k >= available:
            raise RuntimeError(f"only {len(take)} of {need} picks fit the group quotas")
        k = min(available, 2 * k)
