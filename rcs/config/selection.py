"""The ``selection`` section: coreset schedule and the RCS selector's settings."""

from __future__ import annotations

from dataclasses import dataclass

from rcs.config.checks import check, check_in

LIBRARY_CANDIDATE_BATCH = 128
"""selection.candidate_batch without a run config (library use): memory-safe chunks (512 views
of ResNet-18 attacked at once take ~6.5 GB on CPU)."""


def resolve_candidate_batch(candidate_batch: int, train_batch_size: int | None = None) -> int:
    """``selection.candidate_batch`` with 0 resolved: ``train.batch_size`` in a run, else
    :data:`LIBRARY_CANDIDATE_BATCH`. The one place that resolves it."""
    if candidate_batch:
        return candidate_batch
    return LIBRARY_CANDIDATE_BATCH if train_batch_size is None else train_batch_size


@dataclass
class SelectionConfig:
    """Coreset schedule and the RCS selector's settings."""

    method: str = "full"
    """Selector name: full | random | rcs | kcenter | gradnorm | craig (see `rcs select --help`)"""
    fraction: float = 0.2
    """Coreset size k as a share of the candidates, in (0, 1]."""
    warmup_epochs: int = 100
    """Full-data epochs before the first selection (E_w)."""
    every: int = 20
    """Epochs between selections (F); 0 = select once, before epoch warmup_epochs + 1, and keep
    that coreset for the rest of the run."""
    coreset: str = ""
    """A coreset file (`rcs select`'s .npz) used at the run's first selection instead of
    selecting; it must come from this dataset and validation split. Later selections follow
    `every` (0: train on the file's coreset to the end)."""
    rounds: int = 20
    """Greedy rounds R (m = ceil(n / R) picks per round); rounds = n is plain greedy."""
    eta: float = 0.01
    """Step of the head update inside the greedy, per candidate_batch of picks (the published
    greedy steps eta per picked minibatch; its double application is not copied)."""
    granularity: str = "sample"
    """sample | batch (the published behaviour: candidates are whole minibatches)"""
    candidate_batch: int = 0
    """Candidates per chunk of the gradient pass (the other samples of a chunk are the negatives
    of each per-sample loss) and per unit for granularity=batch; 0 = train.batch_size (the
    global batch: under DDP every rank's chunks have this size, so the negatives are as in
    training)."""
    pool: float = 1.0
    """Share of the candidates whose gains are computed: a seeded random pool (at least the
    budget, new at every selection) in which the greedy picks, stochastic-greedy style. Cuts
    the gradient pass, the dominant cost, proportionally (bench/select_quality.py measures what
    it keeps of exact greedy's benefit)."""
    train_attack_steps: int = 1
    """PGD steps of the attack on each candidate's views before its gradient is taken (the
    published scripts' --pgd_iter; rcs default 1)."""
    val_attack_steps: int = 3
    """PGD steps of the RD attack on the validation set U (published --Coreset_pgd_iter 3)."""
    val_attack_start: str = "uniform"
    """Random start of the RD attack on U: uniform (δ0 ~ U(-eps, eps), the published CIFAR code)
    | trades (x + 0.001·N(0, 1), the published ImageNet-32 ACL and SAT code)."""
    val_reattack_every: int = 0
    """Re-attack U every this many greedy rounds (0 = never within a selection: U's
    adversarial images from the start are reused and q_U is recomputed from their cached
    features after each head update, which is cheap)."""
    rd_distance: str = "kl"
    """kl (KL of softmax projections) | minmax_kl (the published min-max scaled variant)"""
    scope: str = "head"
    """Parameters the per-sample gradients are taken of: head | last-<k> (last k head layers)"""
    gradients: str = "exact"
    """How candidates' gains <g_x, q_U> are computed: exact (directional derivatives of each
    candidate's loss from its cached features, recomputed each round; no gradient is stored)
    | sketch (per-sample gradients sketched to sketch_dim into a store searched with FAISS;
    one pass, for stores beyond what exact re-computation can afford)."""
    sketch_dim: int = 1024
    """Gradients are sketched to this many dims (exact when the gradient is smaller)."""
    store: str = "memory"
    """memory | disk (memory-mapped fp16 file, for ImageNet scale)"""
    index: str = "flat"
    """FAISS index: flat (exact inner product) | ivfpq (compressed, for stores beyond RAM)"""
    class_balanced: bool = False
    """Each class gets its proportional share of the coreset (largest-remainder quotas) when
    the dataset has labels: random draws that share per class; RCS (sample granularity) takes
    the best-gain samples of each class up to its quota."""
    seed: int = 0
    """Added to the run seed for the selection's random draws (pool, random selector, attacks)."""

    def validate(self) -> None:
        check(0.0 < self.fraction <= 1.0,
              f"selection.fraction={self.fraction} must be in (0, 1] (e.g. 0.2 keeps 20%)")
        check(self.warmup_epochs >= 0, "selection.warmup_epochs must be >= 0")
        check(self.every >= 0, "selection.every must be >= 0 (0 = select once, never again)")
        check(self.rounds > 0, "selection.rounds must be > 0")
        check(self.eta > 0, "selection.eta must be > 0")
        check(0.0 < self.pool <= 1.0, f"selection.pool={self.pool} must be in (0, 1]")
        check_in("selection.granularity", self.granularity, ("sample", "batch"))
        check_in("selection.rd_distance", self.rd_distance, ("kl", "minmax_kl"))
        check(not (self.class_balanced and self.granularity == "batch"
                    and self.method == "rcs"),
              "selection.class_balanced needs selection.granularity=sample for RCS (whole "
              "minibatches cannot meet per-class quotas)")
        check_in("selection.val_attack_start", self.val_attack_start, ("uniform", "trades"))
        check_in("selection.store", self.store, ("memory", "disk"))
        check_in("selection.index", self.index, ("flat", "ivfpq"))
        check(self.scope == "head" or (self.scope.startswith("last-")
                                        and self.scope[5:].isdigit()),
              f"selection.scope={self.scope!r} must be 'head' or 'last-<k>'")
        check(self.sketch_dim > 0, "selection.sketch_dim must be > 0")
        check(self.train_attack_steps >= 0, "selection.train_attack_steps must be >= 0")
        check(self.candidate_batch == 0 or self.candidate_batch > 1,
              "selection.candidate_batch must be > 1 (or 0 for train.batch_size)")
        check(self.val_reattack_every >= 0,
              "selection.val_reattack_every must be >= 0 (0 = never re-attack U)")
        check_in("selection.gradients", self.gradients, ("exact", "sketch"))
