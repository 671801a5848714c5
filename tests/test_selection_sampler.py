"""CoresetSampler (DataLoader, DDP sharding, epochs) and ReselectionSchedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcs.selection import Coreset, CoresetSampler, ReselectionSchedule


def _coreset(k=23, n=100):
    return Coreset(np.random.default_rng(0).choice(n, k, replace=False))


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_union_over_ranks_is_the_coreset(world):
    cs = _coreset()
    parts = [list(CoresetSampler(cs, shuffle=True, seed=5, rank=r, world_size=world))
             for r in range(world)]
    lens = {len(p) for p in parts}
    assert lens == {-(-23 // world)}  # every rank gets the same count
    assert [len(CoresetSampler(cs, rank=r, world_size=world)) for r in range(world)] == \
        [len(p) for p in parts]
    flat = np.concatenate(parts)
    assert set(flat.tolist()) == set(cs.indices.tolist())
    # disjoint except the documented wrap-around padding (< world repeats)
    assert len(flat) - len(set(flat.tolist())) == -(-23 // world) * world - 23 < world


def test_drop_last_is_disjoint_and_epochs_reshuffle():
    cs = _coreset()
    parts = [list(CoresetSampler(cs, seed=1, rank=r, world_size=3, drop_last=True))
             for r in range(3)]
    flat = sum(parts, [])
    assert len(flat) == len(set(flat)) == 21 and set(flat) <= set(cs.indices.tolist())
    s = CoresetSampler(cs, shuffle=True, seed=1)
    e0 = list(s)
    assert list(s) != e0  # a plain loop: each iteration is the next epoch's order
    s.set_epoch(1)
    e1 = list(s)
    assert list(s) == e1  # an explicit epoch pins the order
    assert e1 != e0 and sorted(e1) == sorted(e0) == cs.indices.tolist()
    assert list(CoresetSampler(cs, shuffle=False)) == cs.indices.tolist()
    s.set_coreset(np.array([3, 1, 2]))
    assert sorted(s) == [1, 2, 3] and len(s) == 3


def test_dataloader_reads_only_the_coreset():
    data = torch.arange(100)
    cs = _coreset()
    loader = torch.utils.data.DataLoader(data, batch_size=5, sampler=CoresetSampler(cs))
    seen = torch.cat(list(loader)).tolist()
    assert sorted(seen) == cs.indices.tolist()
    with pytest.raises(ValueError):
        CoresetSampler(cs, rank=2, world_size=2)


def test_reselection_schedule():
    s = ReselectionSchedule(warmup_epochs=3, every=2)
    assert [e for e in range(1, 11) if s.is_warmup(e)] == [1, 2, 3]
    assert [e for e in range(1, 11) if s.should_select(e)] == [4, 6, 8, 10]
    assert [s.last_selection(e) for e in (3, 4, 5, 6, 9)] == [None, 4, 4, 6, 8]
    z = ReselectionSchedule(0, 1)
    assert all(z.should_select(e) and not z.is_warmup(e) for e in range(1, 6))
    from rcs.config.schema import RunConfig
    cfg = RunConfig()
    assert ReselectionSchedule.from_config(cfg).every == cfg.selection.every
    with pytest.raises(ValueError):
        ReselectionSchedule(1, -1)
    once = ReselectionSchedule(2, 0)  # every=0: one selection, its coreset to the end
    assert [e for e in range(1, 10) if once.should_select(e)] == [3]
    assert [once.last_selection(e) for e in (2, 3, 9)] == [None, 3, 3]


def test_coreset_show_prints_size_histogram_and_overlap(tmp_path, capsys):
    from rcs.cli.coreset import overlap
    from rcs.cli.main import main
    from rcs.selection import Coreset

    a, b = np.array([1, 2, 3, 5, 8, 13]), np.array([2, 3, 4, 8, 9])
    o = overlap(a, b)
    assert o["shared"] == len(set(a) & set(b)) == 3
    assert o["jaccard"] == 3 / len(set(a) | set(b))
    Coreset(a, meta={"method": "rcs", "fraction": 0.1, "dataset_len": 96}).save(tmp_path / "a")
    Coreset(b, meta={"method": "random"}).save(tmp_path / "b")
    sets = ["--set", "data.name=synthetic", "--set", "data.synthetic_size=96"]
    assert main(["coreset", "show", str(tmp_path / "a.npz"), "--against",
                 str(tmp_path / "b.npz"), *sets]) == 0
    out = capsys.readouterr().out
    assert "6 images, selector rcs" in out and "3 shared, 50.0% of this, 60.0% of the other" in out
