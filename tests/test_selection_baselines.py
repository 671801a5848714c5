"""Baseline selectors: facility location (lazy == naive greedy, sparse kNN kernel), k-center
(2-approximation against brute force), gradient-norm direction, and the Selector contract of
every registered selector (exact budget, no validation index, determinism, model untouched)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch

from rcs.selection import SelectionContext, build_selector
from rcs.selection.facility import SparseSimilarity, fl_value, knn_similarity, lazy_greedy
from rcs.selection.gradnorm import GradNormSelector, top_k
from rcs.selection.kcenter import KCenterSelector, covering_radius, kcenter_greedy
from tests.conftest import random_images

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


# ------------------------------------------------------------------------- facility location
def naive_greedy_dense(sim: np.ndarray, k: int, w: np.ndarray | None = None):
    """Independent reference: at every step the exact argmax (lowest id on ties) of
    Σ_i w_i max(s_ij, cur_i) - Σ_i w_i cur_i over a dense matrix (s[i, j]: j covers i)."""
    n = sim.shape[0]
    w = np.ones(n) if w is None else w
    cur, order, gains = np.zeros(n), [], []
    for _ in range(k):
        g = (w[:, None] * np.maximum(sim - cur[:, None], 0.0)).sum(0)
        g[order] = -np.inf
        j = int(np.argmax(g))
        order.append(j)
        gains.append(g[j])
        cur = np.maximum(cur, sim[:, j])
    return np.array(order), np.array(gains), float(w @ cur)


@pytest.mark.parametrize("seed", range(6))
def test_lazy_greedy_equals_naive_greedy_dense(seed):
    rng = np.random.default_rng(seed)
    n = 30
    pts = rng.standard_normal((n, 3))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    sim = dist.max() - dist  # CRAIG's similarity, dense
    w = rng.uniform(0.5, 2.0, n) if seed % 2 else None
    for k in (1, 5, 12, n):
        want_order, want_gains, want_value = naive_greedy_dense(sim, k, w)
        res = lazy_greedy(SparseSimilarity.from_dense(sim), k, w)
        np.testing.assert_array_equal(res.order, want_order)
        np.testing.assert_allclose(res.gains, want_gains, rtol=1e-10, atol=1e-12)
        assert res.value == pytest.approx(want_value, rel=1e-12)
        assert res.value == pytest.approx(fl_value(SparseSimilarity.from_dense(sim),
                                                   res.order, w), rel=1e-12)
        assert np.all(np.diff(res.gains) <= 1e-12)  # submodular: gains never increase
        if k >= 5:  # it is lazy: far fewer gain evaluations than naive's k * n
            assert res.evaluations < k * n


def test_lazy_greedy_equals_naive_on_random_nonmetric_and_sparse_kernels():
    rng = np.random.default_rng(7)
    n = 25
    sim = rng.uniform(0, 1, (n, n))
    sim[rng.uniform(size=(n, n)) < 0.6] = 0.0  # a sparse, asymmetric kernel
    order, gains, value = naive_greedy_dense(sim, 10)
    nb = np.tile(np.arange(n), (n, 1))
    nb[sim == 0] = -1  # only the non-zeros are stored
    res = lazy_greedy(SparseSimilarity.from_neighbours(nb, sim), 10)
    np.testing.assert_array_equal(res.order, order)
    assert res.value == pytest.approx(value, rel=1e-12)


def test_knn_similarity_matches_brute_force_and_stays_sparse():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    knn = 7
    sim, info = knn_similarity(x, knn)
    assert sim.nnz == 200 * knn  # O(n * knn), never n * n
    d = np.linalg.norm(x[:, None].astype(np.float64) - x[None], axis=-1)
    c = info["C"]
    nearest = np.argsort(d, axis=1, kind="stable")[:, :knn]
    assert c >= np.take_along_axis(d, nearest, 1).max()
    for j in range(200):  # column j lists the rows that have j among their knn neighbours
        rows = sim.rows[sim.indptr[j]:sim.indptr[j + 1]]
        want = np.flatnonzero((nearest == j).any(1))
        np.testing.assert_array_equal(np.sort(rows), want)
        np.testing.assert_allclose(sim.sims[sim.indptr[j]:sim.indptr[j + 1]],
                                   c - d[rows, j], atol=1e-4)
    assert (sim.sims > 0).all()


# ------------------------------------------------------------------------- k-center
def brute_force_radius(x: np.ndarray, k: int) -> float:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return min(d[:, list(s)].min(1).max() for s in itertools.combinations(range(len(x)), k))


@pytest.mark.parametrize("seed", range(8))
def test_kcenter_within_twice_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    n = 12
    # clustered points with an outlier or two: where a bad heuristic shows
    x = np.concatenate([rng.normal(c, 0.3, (4, 2)) for c in ((0, 0), (4, 1), (1, 5))])
    x[rng.integers(n)] += rng.normal(0, 6, 2)
    for k in (2, 3, 4):
        opt = brute_force_radius(x, k)
        for first in range(n):
            order, radii = kcenter_greedy(torch.from_numpy(x), k, first)
            assert order[0] == first and len(set(order)) == k
            d = np.linalg.norm(x[:, None] - x[None][:, order], axis=-1).min(1)
            r = d.max()
            assert r <= 2 * opt + 1e-9, (k, first, r, opt)
            # each pick was the point farthest from the picks before it
            for t in range(1, k):
                far = np.linalg.norm(x[:, None] - x[None][:, order[:t]], axis=-1).min(1)
                assert radii[t] == pytest.approx(far.max(), abs=1e-9)
                assert far[order[t]] == pytest.approx(far.max(), abs=1e-9)
            # FAISS assignment gives the same covering radius
            rad, _ = covering_radius(x.astype(np.float32), order)
            assert rad == pytest.approx(r, rel=1e-4, abs=1e-5)


def test_kcenter_handles_duplicates_and_k_equals_n():
    x = torch.zeros(5, 3)
    order, _ = kcenter_greedy(x, 5, first=2)
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        kcenter_greedy(x, 6)


# ------------------------------------------------------------------------- selectors
N = 72


@pytest.fixture(scope="module")
def data():
    """conftest's random images, 72 of them here."""
    return random_images(N)


SMALL = {"candidate_batch": 16, "sketch_dim": 32}


def make(name):
    sel = build_selector(name)
    if hasattr(sel, "settings"):
        for k, v in SMALL.items():
            setattr(sel.settings.selection, k, v)
    if name == "rcs":
        sel.scfg.candidate_batch, sel.scfg.sketch_dim, sel.scfg.rounds = 16, 32, 3
    return sel


def ctx_of(model, data, fraction=0.25, seed=1, epoch=0, candidates=None):
    ds, cand, val = data
    return SelectionContext(ds, cand if candidates is None else candidates, val, fraction,
                            seed=seed, model=model, device="cpu", epoch=epoch)


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()])


BASELINES = ["kcenter", "gradnorm", "craig"]
ALL = BASELINES + ["random", "rcs"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_exact_budget_no_validation_index_model_untouched(model, data, name, fraction):
    ds, cand, val = data
    model.train()
    before = _snapshot(model)
    # validation ids slipped into the candidate list must still never be chosen
    ctx = ctx_of(model, data, fraction, candidates=np.union1d(cand, val))
    cs = make(name).select(ctx)
    n_avail = len(cand)
    assert len(cs) == min(ctx.budget, n_avail)
    clean = ctx_of(model, data, fraction)
    cs2 = make(name).select(clean)
    assert len(cs2) == clean.budget == round(fraction * len(cand))
    for c in (cs, cs2):
        assert not set(c.indices.tolist()) & set(val.tolist())
        assert set(c.indices.tolist()) <= set(cand.tolist())
        assert c.indices.dtype == np.int64 and np.all(np.diff(c.indices) > 0)
        assert "total" in c.meta["timings"] and c.meta["method"] == name
    after = _snapshot(model)
    assert all(torch.equal(before[0][k], v) for k, v in after[0].items())
    assert before[1:] == after[1:]


def test_full_selector_keeps_every_candidate(model, data):
    ds, cand, val = data
    cs = build_selector("full").select(ctx_of(model, data, 0.3))
    np.testing.assert_array_equal(cs.indices, cand)
    cs = build_selector("full").select(ctx_of(model, data, 0.3, candidates=np.arange(N)))
    np.testing.assert_array_equal(cs.indices, cand)  # never a validation id


@pytest.mark.parametrize("name", BASELINES + ["random"])
def test_seeded_selectors_are_deterministic(model, data, name):
    a = make(name).select(ctx_of(model, data, 0.25, seed=3, epoch=2))
    b = make(name).select(ctx_of(model, data, 0.25, seed=3, epoch=2))
    np.testing.assert_array_equal(a.indices, b.indices)
    if a.weights is not None:
        np.testing.assert_array_equal(a.weights, b.weights)
    if name in ("kcenter", "random"):  # the seed moves the random start / the draw
        others = [make(name).select(ctx_of(model, data, 0.25, seed=s, epoch=2)).indices
                  for s in (4, 5, 6)]
        assert any(not np.array_equal(a.indices, o) for o in others)


def test_gradnorm_keeps_the_largest_scores(model, data):
    sel = make("gradnorm")
    cs = sel.select(ctx_of(model, data, 0.25))
    ids, scores = sel.last_scores
    kept = np.isin(ids, cs.indices)
    assert kept.sum() == len(cs)
    assert scores[kept].min() >= scores[~kept].max()  # the hardest samples, not the easiest
    assert cs.meta["score_kept"]["min"] >= cs.meta["score_all"]["mean"]
    assert list(top_k(np.array([0.1, 0.9, 0.5, 0.9]), np.array([10, 11, 12, 13]), 2)) == [11, 13]


def test_gradnorm_scores_are_norms_of_the_full_per_sample_gradients(model, data):
    """Scores (reduced chunk by chunk, scattered by position) == norms of the unreduced
    per-sample head gradients of the same views; and more repeats average more draws."""
    from rcs.selection.gradient_pass import head_gradients
    from rcs.selection.settings import SelectorSettings

    ds, cand, val = data
    sel = GradNormSelector(None, batch=16, attack_steps=1)
    sel.select(ctx_of(model, data, 0.25))
    ids, scores = sel.last_scores
    full = torch.zeros(len(ids), 0)
    for pos, g in head_gradients(ctx_of(model, data, 0.25), SelectorSettings.resolve(batch=16),
                                 lambda g: g):
        if full.shape[1] == 0:
            full = torch.zeros(len(ids), g.shape[1])
        full[torch.from_numpy(pos)] = g
    assert full.shape[1] > 100  # the whole head gradient, not a sketch
    np.testing.assert_allclose(scores, full.norm(dim=1).double().numpy(), rtol=1e-5)
    two = GradNormSelector(None, batch=16, repeats=2)
    two.select(ctx_of(model, data, 0.25))
    assert not np.allclose(two.last_scores[1], scores)  # a second draw of views was averaged


def test_craig_weights_are_cluster_sizes(model, data):
    ds, cand, val = data
    cs = make("craig").select(ctx_of(model, data, 0.25))
    assert cs.weights is not None and cs.weights.sum() == len(cand)
    assert (cs.weights >= 1).all()  # every pick is at least its own nearest pick
    m = cs.meta
    assert m["fl_value"] <= m["fl_value_max"] + 1e-9
    assert m["gain_evaluations"] < m["naive_evaluations"]
    assert set(m["timings"]) >= {"gradients", "knn", "greedy", "weights", "total"}


def test_kcenter_branch_and_weights(model, data):
    ds, cand, val = data
    a = KCenterSelector(None, weights=True, branch="normal", batch=16).select(
        ctx_of(model, data, 0.25))
    assert a.meta["branch"] == "normal" and a.weights.sum() == len(cand)
    from rcs.errors import ConfigError
    with pytest.raises(ConfigError):
        KCenterSelector(None, branch="nope").select(ctx_of(model, data, 0.25))
    with pytest.raises(ConfigError):
        KCenterSelector(None, bogus=1)
