"""AdvCL (Fan et al., NeurIPS 2021): adversarial contrastive learning with a high-frequency view
and pseudo-label supervision (PUBLISHED_METHODS.md A4).

Per image, with three BN branches ``normal`` / ``pgd`` / ``pgd_ce`` (``model.bn_names``):

* ``t1, t2``: two strong augmentations (``augment``; published crop scale (0.2, 1), bilinear);
* ``org``: the weak view, random crop (padding ``train.advcl.weak_padding``) + flip;
* ``hfc = high_pass(org, train.advcl.radius)`` (``rcs.data.frequency``; r = 8);
* ``x_cl``: PGD from ``org`` maximising the 4-view loss below (through 'pgd');
* ``x_ce``: PGD from ``org`` maximising ``sum_g CE_sum(fc_g(f(x_ce, 'pgd_ce')), y_g) / G``.

Loss (``rcs.losses.advcl``), projections L2-normalised::

    L = SupCon([g(x_cl; pgd), g(t1; normal), g(t2; normal), g(hfc; normal)]; T, T_base)
        + w_CE * (1/G) sum_g CE_mean(fc_g(f(x_ce; pgd_ce)), y_g)         (w_CE = 0.2)

``y_g`` are FAISS k-means pseudo-labels (:mod:`rcs.methods.pseudo_labels`) of the encoder
features at each cluster count (default 2, 10, 50, 100, 500; capped at the dataset size),
computed from ``train.advcl.pseudo_checkpoint`` once, or from the current model at the start
and every ``train.advcl.pseudo_every`` epochs; they are kept in the checkpoint.

The attacks run in train mode as published (``train.advcl.attack_mode: train``: batch
statistics, and the attack forwards update the 'pgd' / 'pgd_ce' running statistics); ``eval``
runs them like ACL's (running statistics, parameters frozen). The projections of ``t1``, ``t2``
and ``hfc`` the contrastive attack needs are computed once per step (the published code
recomputes them at every attack step; their value is the same, only the 'normal' running
statistics are updated fewer times). Every view is its own forward, so a batch of a single
image (possible as the last batch of a coreset epoch) is doubled: BatchNorm1d needs two rows.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rcs.attacks import attack_mode, pgd
from rcs.config.checks import check, check_in
from rcs.data import high_pass, to_float
from rcs.data.augment import crop_flip
from rcs.errors import ConfigError
from rcs.losses import pseudo_label_ce, supcon_loss
from rcs.methods.base import Method, RunContext, StepOutput, register_method
from rcs.methods.pseudo_labels import (
    PseudoHeads,
    checkpoint_encoder,
    effective_counts,
    encoder_features,
    pseudo_labels,
)
from rcs.utils.distributed import gather_batch

BRANCHES = ("normal", "pgd", "pgd_ce")


@dataclass
class AdvclSettings:
    """``train.advcl``: AdvCL's pseudo-label clustering, loss weights and views."""

    clusters: list[int] = field(default_factory=lambda: [2, 10, 50, 100, 500])
    """k-means cluster counts, one pseudo-label head each (capped at the dataset size)."""
    ce_weight: float = 0.2
    """Weight of the pseudo-label cross-entropy term."""
    base_temperature: float = 0.07
    """SupCon base temperature (the contrastive loss is scaled by T / T_base = 7.14)."""
    radius: float = 8.0
    """FFT high-pass radius r: frequencies closer than r to the centre are removed."""
    attack_mode: str = "train"
    """Attack BN mode: train (published: batch statistics; the attack forwards update the
    running statistics) | eval (running statistics, frozen, like ACL)."""
    pseudo_every: int = 100
    """Recompute the pseudo-labels from the current model every N epochs (0 = only once, at the
    start). Ignored with pseudo_checkpoint (computed once from that model)."""
    pseudo_checkpoint: str = ""
    """An rcs pretraining checkpoint whose encoder gives the k-means features (e.g. a standard
    contrastive model, as the published ImageNet-feature clusters); empty = the current model."""
    pseudo_branch: str = "normal"
    """BN branch of the encoder whose features are clustered."""
    kmeans_iters: int = 20
    """FAISS k-means iterations (seeded by the run seed: deterministic)."""
    weak_padding: int = 4
    """Weak view = random crop with this zero padding + horizontal flip."""

    def validate(self) -> None:
        check(len(self.clusters) > 0 and all(k >= 2 for k in self.clusters),
              f"train.advcl.clusters={self.clusters} must be a non-empty list of cluster "
              "counts >= 2 (published [2, 10, 50, 100, 500])")
        check(self.ce_weight >= 0, "train.advcl.ce_weight must be >= 0")
        check(self.base_temperature > 0, "train.advcl.base_temperature must be > 0")
        check(self.radius >= 0, "train.advcl.radius must be >= 0")
        check_in("train.advcl.attack_mode", self.attack_mode, ("train", "eval"))
        check(self.pseudo_every >= 0, "train.advcl.pseudo_every must be >= 0")
        check(self.kmeans_iters > 0, "train.advcl.kmeans_iters must be > 0")
        check(self.weak_padding >= 0, "train.advcl.weak_padding must be >= 0")


@register_method("advcl", settings=AdvclSettings)
class AdvCL(Method):
    name = "advcl"

    def __init__(self, cfg):
        super().__init__(cfg)
        missing = [b for b in BRANCHES if b not in cfg.model.bn_names]
        if missing:
            raise ConfigError(
                f"train.method=advcl needs the BN branches {list(BRANCHES)}, but model.bn_names="
                f"{list(cfg.model.bn_names)}; set --set 'model.bn_names=[normal,pgd,pgd_ce]' "
                "(configs/cifar10_advcl_rcs.yaml does)")
        self.labels: torch.Tensor | None = None  # [G, N] int64 on the CPU
        self.labels_epoch = 0
        self.counts: list[int] = []
        self.ctx: RunContext | None = None
        self.heads: PseudoHeads | None = None
        self._idx: torch.Tensor | None = None

    # ------------------------------------------------------------------ trainer hooks
    def setup(self, ctx: RunContext) -> dict[str, torch.nn.Module]:
        self.ctx = ctx
        self.counts = effective_counts(self.cfg.train.advcl.clusters, len(ctx.dataset))
        self.heads = PseudoHeads(ctx.model.feature_dim, self.counts)
        return {"pseudo_heads": self.heads}

    def on_epoch_start(self, epoch: int, augment) -> dict[str, float]:
        t = self.cfg.train
        every = 0 if t.advcl.pseudo_checkpoint else t.advcl.pseudo_every
        due = self.labels is None or (every > 0 and (epoch - 1) % every == 0
                                      and self.labels_epoch != epoch)
        if not due:
            return {}
        t0 = time.perf_counter()
        self.refresh_labels(epoch)
        return {"pseudo_labels_epoch": float(epoch),
                "pseudo_labels_seconds": time.perf_counter() - t0}

    def refresh_labels(self, epoch: int) -> None:
        """(Re)compute the pseudo-labels; rank 0 computes them, every rank receives them."""
        ctx, t = self.ctx, self.cfg.train
        assert ctx is not None, "AdvCL.setup was not called"
        env = ctx.env
        distributed = env is not None and env.enabled and torch.distributed.is_initialized()
        labels = None
        if not distributed or env.is_main:
            if t.advcl.pseudo_checkpoint:
                model, branch = checkpoint_encoder(t.advcl.pseudo_checkpoint, ctx.device,
                                                   t.advcl.pseudo_branch)
            else:
                model, branch = ctx.model, t.advcl.pseudo_branch
            feats = encoder_features(model, ctx.dataset, branch, ctx.device, t.batch_size)
            labels = torch.from_numpy(pseudo_labels(feats, self.counts, self.cfg.seed,
                                                    t.advcl.kmeans_iters))
        if distributed:
            shape = (len(self.counts), len(ctx.dataset))
            buf = (labels if labels is not None else torch.empty(shape, dtype=torch.int64))
            buf = buf.to(ctx.device)
            torch.distributed.broadcast(buf, src=0)
            labels = buf.cpu()
        self.labels, self.labels_epoch = labels, epoch

    def prepare_batch(self, idx: np.ndarray) -> None:
        self._idx = torch.as_tensor(np.asarray(idx), dtype=torch.int64)

    def state_dict(self) -> dict:
        if self.labels is None:
            return {}
        return {"pseudo_labels": self.labels.to(torch.int32),
                "pseudo_labels_epoch": self.labels_epoch, "pseudo_counts": list(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        if "pseudo_labels" not in state:
            return
        if list(state["pseudo_counts"]) != self.counts:
            raise ConfigError(f"the checkpoint's AdvCL pseudo-labels have cluster counts "
                              f"{state['pseudo_counts']}, this run {self.counts}")
        self.labels = state["pseudo_labels"].cpu().long()
        self.labels_epoch = int(state["pseudo_labels_epoch"])

    # ------------------------------------------------------------------ the step
    def step(self, forward, model, x, y, augment, generator) -> StepOutput:
        t, a = self.cfg.train, self.cfg.train.attack
        if self.labels is None or self._idx is None:
            raise RuntimeError("AdvCL.step needs pseudo-labels (on_epoch_start) and the batch "
                               "indices (prepare_batch) first")
        idx = self._idx
        if x.shape[0] == 1:  # BatchNorm1d in train mode needs two rows per forward
            x, idx = x.repeat(2, 1, 1, 1), idx.repeat(2)
        y_pseudo = self.labels[:, idx].to(x.device)  # [G, B]
        t1, t2 = augment(x, generator=generator), augment(x, generator=generator)
        org = crop_flip(to_float(x), t.advcl.weak_padding, generator=generator)
        hfc = high_pass(org, t.advcl.radius)
        if t.channels_last and t1.is_cuda:
            t1, t2, org, hfc = (v.contiguous(memory_format=torch.channels_last)
                                for v in (t1, t2, org, hfc))
        heads = self.heads
        eval_mode = t.advcl.attack_mode == "eval"
        frozen = [model, heads] if eval_mode else None
        mode = attack_mode(frozen) if eval_mode else contextlib.nullcontext()
        with mode, torch.no_grad():
            z_fixed = [model(v, "normal") for v in (t1, t2, hfc)]

        def cl_objective(xa: torch.Tensor) -> torch.Tensor:
            return supcon_loss([model(xa, "pgd"), *z_fixed], t.temperature,
                               t.advcl.base_temperature)

        def ce_objective(xa: torch.Tensor) -> torch.Tensor:
            logits = heads(model.features(xa, "pgd_ce"))
            return sum(F.cross_entropy(lg.float(), yg, ignore_index=-1, reduction="sum")
                       for lg, yg in zip(logits, y_pseudo)) / len(logits)

        kw = dict(eps=a.eps, alpha=a.alpha, steps=a.steps, random_start=a.random_start,
                  generator=generator, model=frozen)
        x_cl = pgd(cl_objective, org, **kw)
        x_ce = pgd(ce_objective, org, **kw)
        z_cl, z1, z2, zh, logits = forward([
            (x_cl, "pgd", "proj"), (t1, "normal", "proj"), (t2, "normal", "proj"),
            (hfc, "normal", "proj"), (x_ce, "pgd_ce", "features:pseudo_heads")])
        views = [gather_batch(z) for z in (z_cl, z1, z2, zh)]  # global negatives under DDP
        l_cl = supcon_loss(views, t.temperature, t.advcl.base_temperature)
        l_ce = pseudo_label_ce(logits, y_pseudo)
        loss = l_cl + t.advcl.ce_weight * l_ce
        return StepOutput(loss, {"supcon": float(l_cl.detach()), "pseudo_ce": float(l_ce.detach())})
