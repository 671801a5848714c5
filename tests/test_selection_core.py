"""RCS core on plain arrays: sketch (JL bound), gradient store, retrieval, greedy rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcs.errors import CoresetError
from rcs.selection.greedy import greedy_rounds, round_sizes
from rcs.selection.retrieval import Retriever, exact_top_m
from rcs.selection.sketch import Sketch
from rcs.selection.store import GradientStore, ShardWriter, concat_shards

# ------------------------------------------------------------------------------------ sketch


@pytest.mark.parametrize("kind", ["gaussian", "countsketch"])
def test_sketch_inner_products_within_jl_bound(kind):
    n, in_dim, d = 40, 3000, 512
    a = torch.randn(n, in_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sk = Sketch(in_dim, d, seed=3, kind=kind, block=700)  # several generator blocks
    s = sk(a).double()
    true, est = a @ a.T, s @ s.T
    norms = a.norm(dim=1)
    err = (est - true).abs() / (norms[:, None] * norms[None, :])
    eps = 2.0 * math.sqrt(math.log(n) / d)  # c·sqrt(log n / d), c = 2
    assert (err <= eps).float().mean() >= 0.99, float(err.max())
    # and the sketch is not the identity: errors are nonzero but centred
    assert err.max() > 1e-6
    assert abs(float((est - true).mean() / true.diag().mean())) < 0.05


def test_sketch_exact_when_small_and_seeded():
    x = torch.randn(5, 20)
    sk = Sketch(20, 32, seed=0)
    assert sk.exact and sk.dim == 20 and torch.equal(sk(x), x)
    big1, big2 = Sketch(100, 16, seed=7), Sketch(100, 16, seed=7)
    y = torch.randn(3, 100)
    assert torch.equal(big1(y), big2(y))
    assert not torch.equal(big1(y), Sketch(100, 16, seed=8)(y))
    assert torch.allclose(big1(y), y @ big1.matrix().T, atol=1e-5)
    with pytest.raises(ValueError):
        big1(torch.randn(3, 99))


# ------------------------------------------------------------------------------------ store


def test_memmap_store_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((37, 9)).astype(np.float32)
    st = GradientStore.create(37, 9, tmp_path / "g.npy")
    st.write(0, rows[:20])
    st.write_ids(np.array([30, 20, 21, 36, 22, 23, 24, 25, 26, 27, 28, 29, 31, 32, 33, 34, 35]),
                 rows[[30, 20, 21, 36, 22, 23, 24, 25, 26, 27, 28, 29, 31, 32, 33, 34, 35]])
    want = rows.astype(np.float16)
    again = GradientStore.open(tmp_path / "g.npy")
    assert again.on_disk and (again.n, again.dim) == (37, 9)
    np.testing.assert_array_equal(again.to_numpy(np.float16), want)
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), want)  # a plain .npy file
    np.testing.assert_array_equal(again.rows([5, 0, 36]), want[[5, 0, 36]].astype(np.float32))
    got = np.concatenate([b.numpy().copy() for _, b in again.iter_blocks(8)])
    np.testing.assert_array_equal(got, want.astype(np.float32))
    with pytest.raises(ValueError):
        st.write(35, rows[:5])


def test_shards_concatenate_by_id(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((50, 6)).astype(np.float32)
    chunks = [np.arange(s, min(50, s + 8)) for s in range(0, 50, 8)]
    for rank in range(3):  # chunk c goes to rank c % 3
        w = ShardWriter(tmp_path / "sh", f"r{rank}", 6)
        for c in range(rank, len(chunks), 3):
            w.append(chunks[c], rows[chunks[c]])
        w.close()
    mem = concat_shards(tmp_path / "sh", 50, block_rows=5)
    disk = concat_shards(tmp_path / "sh", 50, tmp_path / "all.npy")
    np.testing.assert_array_equal(mem.to_numpy(np.float16), rows.astype(np.float16))
    np.testing.assert_array_equal(disk.to_numpy(np.float16), rows.astype(np.float16))
    (tmp_path / "sh" / "r2.json").unlink()  # an unfinished rank
    with pytest.raises(CoresetError, match="missing"):
        concat_shards(tmp_path / "sh", 50)


# -------------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize("where", ["memory", "disk", "memory-stream"])
def test_retrieval_equals_exact_top_m_with_exclusions(tmp_path, where):
    rng = np.random.default_rng(2)
    mat = rng.standard_normal((300, 16)).astype(np.float32)
    st = GradientStore.create(300, 16, tmp_path / "g.npy" if where == "disk" else None,
                              np.float32)
    st.write(0, mat)
    r = Retriever(st, "flat", block_rows=64, max_ram_gb=0 if where == "memory-stream" else 2)
    assert r.engine == ("flat" if where == "memory" else "stream")
    excluded = np.zeros(300, bool)
    for _ in range(4):
        q = rng.standard_normal(16)
        ids, scores = r.search(q, 25, excluded)
        ref_ids, ref_scores = exact_top_m(mat, q, 25, excluded)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
        excluded[ids] = True
    ids, _ = r.search(rng.standard_normal(16), 1000, excluded)  # more than remain
    assert len(ids) == 200 and not excluded[ids].any()


def test_ivfpq_returns_m_allowed_ids_and_ranks_well():
    rng = np.random.default_rng(3)
    mat = rng.standard_normal((3000, 32)).astype(np.float32)
    st = GradientStore.create(3000, 32, dtype=np.float32)
    st.write(0, mat)
    r = Retriever(st, "ivfpq", seed=0)
    excluded = np.zeros(3000, bool)
    excluded[rng.choice(3000, 500, replace=False)] = True
    q = rng.standard_normal(32)
    ids, scores = r.search(q, 100, excluded)
    assert len(ids) == 100 and len(set(ids)) == 100 and not excluded[ids].any()
    np.testing.assert_allclose(scores, mat[ids] @ q, rtol=1e-4, atol=1e-4)  # exact scores
    ref, _ = exact_top_m(mat, q, 100, excluded)
    assert len(set(ids) & set(ref)) >= 50  # approximate, but far better than chance (~3)


# ----------------------------------------------------------------------------------- greedy


def test_round_sizes_sum_exactly():
    assert round_sizes(7, 3) == [3, 3, 1]
    assert round_sizes(10, 4) == [3, 3, 3, 1]
    assert round_sizes(5, 4) == [2, 2, 1]
    assert round_sizes(4, 9) == [1, 1, 1, 1]
    for n in range(1, 60):
        for r in (1, 2, 3, 7, 20):
            assert sum(round_sizes(n, r)) == n


def _linear_problem(n=40, d=6, seed=4):
    """Candidate gradients G, and a validation gradient q(φ) = H φ + c moved by φ -= η·mean."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, d))
    h = rng.standard_normal((d, d))
    h = h @ h.T / d
    c = rng.standard_normal(d)
    return g, h, c


def _store_and_update(g, h, c, eta):
    """The store of gradients ``g`` and a greedy update moving φ by η·mean(picked rows)."""
    st = GradientStore.create(len(g), g.shape[1], dtype=np.float32)
    st.write(0, g)
    state = {"phi": np.zeros(g.shape[1])}

    def update(r, picked):
        state["phi"] = state["phi"] - eta * g[picked].mean(0)
        return h @ state["phi"] + c

    return st, update


def test_rounds_equal_n_matches_brute_force_greedy():
    g, h, c = _linear_problem()
    eta, n_sel = 0.3, 12
    # brute force: recompute every gain each step, argmax, update phi with the pick's gradient
    phi, chosen = np.zeros(g.shape[1]), []
    for _ in range(n_sel):
        q = h @ phi + c
        gains = g @ q
        gains[chosen] = -np.inf
        k = int(np.argmax(gains))
        chosen.append(k)
        phi = phi - eta * g[k]
    st, update = _store_and_update(g, h, c, eta)
    res = greedy_rounds(len(g), n_sel, n_sel, c, Retriever(st).search, update)
    assert [int(p[0]) for p in res.picks] == chosen
    assert len(res.gains) == n_sel
    # a doubled update (the published bug) gives another sequence on this problem
    state2 = {"phi": np.zeros(g.shape[1])}

    def update_twice(r, picked):
        state2["phi"] = state2["phi"] - 2 * eta * g[picked].mean(0)
        return h @ state2["phi"] + c

    res2 = greedy_rounds(len(g), n_sel, n_sel, c, Retriever(st).search, update_twice)
    assert [int(p[0]) for p in res2.picks] != chosen


def test_greedy_rounds_budget_and_gains():
    g, h, c = _linear_problem(n=30)
    st = GradientStore.create(30, g.shape[1], dtype=np.float32)
    st.write(0, g)
    calls = []
    res = greedy_rounds(30, 7, 3, c, Retriever(st).search,
                        lambda r, p: (calls.append(r), c)[1])
    assert [len(p) for p in res.picks] == [3, 3, 1] and calls == [0, 1]
    assert len(set(res.units.tolist())) == 7 and res.trim == 0
    top3, s3 = exact_top_m(g, c, 3)
    np.testing.assert_array_equal(res.picks[0], top3)
    assert res.gains[0] == pytest.approx(s3.sum(), rel=1e-5)
    assert res.mean_gains[0] == pytest.approx(s3.mean(), rel=1e-5)


def test_greedy_batch_units_trim_to_exact_budget():
    rng = np.random.default_rng(5)
    sizes = np.array([4, 4, 4, 4, 3])  # 19 samples in 5 batches
    g = rng.standard_normal((5, 3))
    st = GradientStore.create(5, 3, dtype=np.float32)
    st.write(0, g)
    for budget_n, rounds in [(7, 3), (1, 1), (19, 2), (9, 9), (5, 2)]:
        res = greedy_rounds(5, budget_n, rounds, rng.standard_normal(3), Retriever(st).search,
                            lambda r, p: rng.standard_normal(3), sizes)
        units = res.units
        assert len(set(units.tolist())) == len(units)
        assert sizes[units].sum() - res.trim == budget_n
        assert 0 <= res.trim < sizes[units[-1]]


def test_class_quotas_sum_exactly_and_stay_proportional():
    from rcs.selection.base import class_quotas

    rng = np.random.default_rng(7)
    for _ in range(50):
        labels = rng.integers(0, rng.integers(2, 12), rng.integers(20, 300))
        k = int(rng.integers(1, len(labels) + 1))
        classes, quota = class_quotas(labels, k)
        counts = np.array([(labels == c).sum() for c in classes])
        assert quota.sum() == k
        assert (np.abs(quota - counts * k / len(labels)) < 1).all()
        assert (quota <= counts).all()


def test_group_quotas_match_brute_force_constrained_greedy():
    """With quotas, each round is the best-gain picks that fit the groups' remaining room;
    brute force: scan all units by gain each round (one pick per round here)."""
    g, h, c = _linear_problem(n=36, seed=9)
    groups = np.arange(36) % 4
    quotas = np.array([5, 1, 3, 2])
    eta, n_sel = 0.3, int(quotas.sum())
    phi, chosen, room = np.zeros(g.shape[1]), [], quotas.copy()
    for _ in range(n_sel):
        gains = g @ (h @ phi + c)
        order = [int(k) for k in np.argsort(-gains, kind="stable")
                 if k not in chosen and room[groups[k]] > 0]
        k = order[0]
        chosen.append(k)
        room[groups[k]] -= 1
        phi = phi - eta * g[k]
    st, update = _store_and_update(g, h, c, eta)
    res = greedy_rounds(len(g), n_sel, n_sel, c, Retriever(st).search, update, None,
                        groups, quotas)
    assert [int(p[0]) for p in res.picks] == chosen
    # several picks per round: exact per-group counts and the round's picks fit the room
    res = greedy_rounds(len(g), n_sel, 3, c, Retriever(st).search, lambda r, p: c, None,
                        groups, quotas)
    np.testing.assert_array_equal(np.bincount(groups[res.units], minlength=4), quotas)
    first = res.picks[0]
    top = [int(k) for k in np.argsort(-(g @ c), kind="stable")]
    fits, left = [], quotas.copy()
    for k in top:  # the first round: best gains that fit, in order
        if left[groups[k]] > 0 and len(fits) < len(first):
            fits.append(k)
            left[groups[k]] -= 1
    assert sorted(first.tolist()) == sorted(fits)
    with pytest.raises(ValueError, match="quotas"):
        greedy_rounds(len(g), n_sel, 3, c, Retriever(st).search, lambda r, p: c, None,
                      groups, quotas + 1)
