"""Typed configuration of every rcs job (dataclasses).

Each section owns its defaults and validates itself in ``validate()``; ``RunConfig.validate``
calls them all. Defaults follow the published CIFAR-10 ACL+RCS setting (see DESIGN.md and
``shared/reference``); the tiny CPU configs in ``configs/`` override sizes only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rcs.errors import ConfigError, warn

EPS_8 = 8 / 255
ALPHA_2 = 2 / 255


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _in(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name}={value!r} is not one of {', '.join(choices)}")


@dataclass
class DataConfig:
    """Which dataset to read and how to split it."""

    name: str = "synthetic"
    """cifar10 | cifar100 | stl10 | imagenet32 | npz | folder | synthetic"""
    root: str = ""
    """Folder (or .npz file) holding the dataset; see ``rcs.data`` for each expected layout."""
    split: str = "train"
    """Split used for pretraining/selection: train | test | unlabeled (STL-10) | train+unlabeled."""
    val_fraction: float = 0.01
    """Share of the training split held out as the RCS validation set U (never a candidate)."""
    limit: int = 0
    """Use only the first ``limit`` images (0 = all); handy for quick runs."""
    synthetic_size: int = 512
    """Number of images of the synthetic dataset."""
    num_classes: int = 10
    """Classes of the synthetic dataset (the readers take it from the files)."""
    image_size: int = 32
    """Side in pixels of the synthetic images (the readers take it from the files)."""
    download: bool = False
    """Download CIFAR-10/100 or STL-10 from the official URL (MD5-checked) when missing."""
    cache_dir: str = ""
    """Where decoded arrays are cached for memory-mapping (default: <root>/.rcs_cache)."""

    def validate(self) -> None:
        _in("data.name", self.name,
            ("cifar10", "cifar100", "stl10", "imagenet32", "npz", "folder", "synthetic"))
        _check(0.0 <= self.val_fraction < 1.0,
               f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        _check(self.limit >= 0, "data.limit must be >= 0 (0 means all images)")
        _check(self.synthetic_size > 0, "data.synthetic_size must be > 0")
        _check(self.image_size > 0, "data.image_size must be > 0")
        if self.name not in ("synthetic",):
            _check(bool(self.root), f"data.root is empty: set it to the folder holding "
                   f"{self.name} (e.g. --set data.root=/path/to/{self.name})")


@dataclass
class AugmentConfig:
    """On-device SimCLR-style augmentation; ``strength`` is DynACL's s (1 = full ACL strength)."""

    crop: str = "resized"
    """resized (RandomResizedCrop: SimCLR / ACL views) | pad (RandomCrop with zero padding
    crop_padding, no resize: the published SAT pretraining's RandomCrop(32, padding=4))."""
    crop_padding: int = 4
    """crop=pad: zero padding p; the image moves by an offset uniform in [-p, p] per axis."""
    crop_scale: tuple[float, float] = (0.08, 1.0)
    """RandomResizedCrop area range at strength 1; ACL/DynACL use (1 - 0.9 s, 1) = (0.1, 1)."""
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """RandomResizedCrop aspect-ratio range (min, max)."""
    flip_prob: float = 0.5
    """Probability of a horizontal flip."""
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    """Brightness, contrast, saturation, hue jitter at strength 1."""
    jitter_prob: float = 0.8
    """Probability of applying the colour jitter (times strength)."""
    grayscale_prob: float = 0.2
    """Probability of converting a view to grayscale (times strength)."""
    strength: float = 1.0
    """Augmentation strength s in [0, 1] (DynACL anneals it; 1 = full ACL strength)."""
    dynacl_crop: bool = True
    """Crop scale is (1 - 0.9 s, 1) as in ACL/DynACL (overrides ``crop_scale`` when True)."""
    interpolation: str = "bilinear"
    """bilinear | bicubic | nearest"""

    def validate(self) -> None:
        lo, hi = self.crop_scale
        _check(0.0 < lo <= hi <= 1.0, f"augment.crop_scale={self.crop_scale} must satisfy "
               "0 < min <= max <= 1")
        for n in ("flip_prob", "jitter_prob", "grayscale_prob", "strength"):
            v = getattr(self, n)
            _check(0.0 <= v <= 1.0, f"augment.{n}={v} must be in [0, 1]")
        _in("augment.interpolation", self.interpolation, ("bilinear", "bicubic", "nearest"))
        _in("augment.crop", self.crop, ("resized", "pad"))
        _check(self.crop_padding >= 0, f"augment.crop_padding={self.crop_padding} must be >= 0")


ARCH_NAMES = ("resnet18", "resnet34", "resnet50", "wrn28_10", "wrn")
"""The built-in encoders; ``model.arch`` may also name a factory by dotted path."""


@dataclass
class ModelConfig:
    """The encoder, its BN branches and the projection head."""

    arch: str = "resnet18"
    """resnet18 | resnet34 | resnet50 | wrn28_10 | wrn (set depth/widen) | a factory by dotted
    path, 'package.module:function', returning any nn.Module whose output is the feature vector
    (its BatchNorms become multi-BN; see rcs.models.external)"""
    width: int = 64
    """Channels of the first stage (64 = standard); small values make tiny test models."""
    blocks: list[int] = field(default_factory=list)
    """Blocks per stage, overriding the arch's (e.g. [1, 1] for a 2-stage tiny ResNet)."""
    depth: int = 28
    """WRN depth (6n+4)."""
    widen: int = 10
    """WRN widen factor."""
    head: str = "acl3"
    """acl3 (512-512-512 MLP, BN after each layer) | mlp2 (ImageNet 2-layer) | advcl (AdvCL:
    512-512-BN-128, one BN shared by the branches) | rocl (RoCL: 512-2048-128, no BN) | byol
    (BYOL/BYORL: 512-4096-BN-256) | none"""
    head_dim: int = 512
    """Output dim of the head (ACL 512, AdvCL/RoCL 128, BYOL 256)."""
    head_hidden: int = 0
    """Hidden width of the head; 0 = the head's default (the feature dim; rocl 2048, byol 4096)."""
    bn_names: list[str] = field(default_factory=lambda: ["normal", "pgd"])
    """BN branches of every multi-BN layer (clean views 'normal', adversarial views 'pgd'; AdvCL
    adds 'pgd_ce'; single-BN methods use ['normal'])."""
    normalize: str = "imagenet"
    """Input normalisation inside the model: imagenet | cifar10 | none"""
    num_classes: int = 10
    """Size of the classifier for SAT pretraining and fine-tuning."""

    def validate(self) -> None:
        _check(self.arch in ARCH_NAMES or ((":" in self.arch or "." in self.arch)
                                           and " " not in self.arch),
               f"model.arch={self.arch!r} is not one of {', '.join(ARCH_NAMES)}, nor a factory "
               "by dotted path such as 'mypkg.nets:resnet18' (see rcs.models.external)")
        _in("model.head", self.head, ("acl3", "mlp2", "advcl", "rocl", "byol", "none"))
        _check(self.head_hidden >= 0, "model.head_hidden must be >= 0 (0 = the head's default)")
        _in("model.normalize", self.normalize, ("imagenet", "cifar10", "none"))
        _check(self.width > 0, "model.width must be > 0")
        _check(all(b > 0 for b in self.blocks), "model.blocks entries must be > 0")
        _check((self.depth - 4) % 6 == 0, f"model.depth={self.depth} must be 6n+4 for a WRN")
        _check(len(self.bn_names) >= 1 and len(set(self.bn_names)) == len(self.bn_names),
               "model.bn_names must be a non-empty list of distinct names")


@dataclass
class AttackConfig:
    """L-inf PGD settings (pixel space [0, 1]); accepts fractions like '8/255' in YAML."""

    eps: float = EPS_8
    """L-inf radius ε in [0, 1] pixel units (8/255)."""
    alpha: float = ALPHA_2
    """PGD step size (2/255)."""
    steps: int = 5
    """PGD steps (0 = no attack: the clean images)."""
    random_start: bool = True
    """Start from a uniform random point in the ε-ball (else from the clean image)."""

    def validate(self, where: str = "attack") -> None:
        for name in ("eps", "alpha"):
            v = getattr(self, name)
            _check(v >= 0, f"{where}.{name} must be >= 0")
            _check(v <= 1, f"{where}.{name}={v:g} is larger than 1, but pixels are in [0, 1]: did "
                   f"you mean {v:g}/255? Write it as a fraction: --set {where}.{name}={v:g}/255")
        _check(self.steps >= 0, f"{where}.steps must be >= 0")
        if self.eps > 32 / 255:
            warn(f"{where}.eps={self.eps:.4g} is {self.eps * 255:.4g}/255, far above the usual "
                 "8/255 (pixels are in [0, 1]); write eps as a fraction of 255 if you meant "
                 "pixel levels")


@dataclass
class TrainConfig:
    """Pretraining: method, optimisation, schedule, attack, method settings, checkpoints."""

    method: str = "acl"
    """acl | dynacl | air | dynacl_air | sat | advcl | rocl | byorl | tikhonov | clae | ifm | hcl |
    mochi | aacl | arocl | adco | caco | rush (see `rcs train --help` for references; methods
    registered by user code work too)"""
    epochs: int = 1000
    """Pretraining epochs (full-data warm-up epochs included)."""
    batch_size: int = 512
    """Global batch: all DDP ranks together (the published 512). Each of W ranks trains
    batch_size / W images per step (W must divide it); the contrastive negatives of a step are
    the whole global batch (embeddings are gathered across ranks)."""
    optimizer: str = "lars"
    """lars | sgd"""
    lr: float = 5.0
    """Peak learning rate after the warm-up (published LARS 5.0 at batch 512)."""
    weight_decay: float = 1e-6
    """Weight decay of the optimizer."""
    momentum: float = 0.9
    """Momentum of the optimizer."""
    nesterov: bool = False
    """Nesterov momentum (optimizer sgd; needs momentum > 0)."""
    trust_coef: float = 1e-3
    """LARS trust coefficient η: local lr = η ||w|| / (||g|| + wd ||w||)."""
    lr_schedule: str = "epoch"
    """epoch (published): linear lr warm-up over lr_warmup_epochs, then cosine to min_lr, as a
    function of epochs done, advanced per step, so a coreset epoch spans the same stretch of the
    curve as a full-data epoch | samples: the same curve over samples seen (coreset epochs move
    it by their share of the data; for comparisons at an equal number of samples). See
    rcs.train.schedule."""
    lr_warmup_epochs: float = 10.0
    """Epochs of linear lr warm-up from 0 (full-data epochs under RCS's warm-up)."""
    min_lr: float = 1e-6
    """The cosine ends at this rate after train.epochs."""
    temperature: float = 0.5
    """Temperature of the contrastive (NT-Xent) loss."""
    attack: AttackConfig = field(default_factory=AttackConfig)
    air_lambda1: float = 0.5
    """AIR: weight λ1 of the standard invariant regulariser (SIR)."""
    air_lambda2: float = 0.5
    """AIR: weight λ2 of the adversarial invariant regulariser (AIR)."""
    air_variant: str = "faithful"
    """faithful (default: the published AIR code's regularisers, probabilities passed where
    log-probabilities are expected; what the published numbers come from) | corrected (true KL
    divergences with renormalised P, Q: a different method, offered as a named option)."""
    dynacl_period: int = 50
    """DynACL: strength drops by 0.05 every ``dynacl_period`` epochs (scaled to 1000 epochs)."""
    tikhonov_lambda: float = 0.0
    """Contrastive Tikhonov penalty weight λ: L + (λ/2) Σ_k (‖∇_{x̃_2k-1} L‖² + ‖∇_{x̃_2k} L‖²)/2
    by double back-propagation. 0 = off; > 0 adds it to any method's loss (over every image the
    method's forward sees); method tikhonov needs it (published values 0.1, 1, 10)."""
    advcl_clusters: list[int] = field(default_factory=lambda: [2, 10, 50, 100, 500])
    """AdvCL: k-means cluster counts, one pseudo-label head each (capped at the dataset size)."""
    advcl_ce_weight: float = 0.2
    """AdvCL: weight of the pseudo-label cross-entropy term."""
    advcl_base_temperature: float = 0.07
    """AdvCL: SupCon base temperature (the contrastive loss is scaled by T / T_base = 7.14)."""
    advcl_radius: float = 8.0
    """AdvCL: FFT high-pass radius r: frequencies closer than r to the centre are removed."""
    advcl_attack_mode: str = "train"
    """AdvCL attack BN mode: train (published: batch statistics; the attack forwards update the
    running statistics) | eval (running statistics, frozen, like ACL)."""
    advcl_pseudo_every: int = 100
    """AdvCL: recompute the pseudo-labels from the current model every N epochs (0 = only once,
    at the start). Ignored with advcl_pseudo_checkpoint (computed once from that model)."""
    advcl_pseudo_checkpoint: str = ""
    """AdvCL: an rcs pretraining checkpoint whose encoder gives the k-means features (e.g. a
    standard contrastive model, as the published ImageNet-feature clusters); empty = the
    current model."""
    advcl_pseudo_branch: str = "normal"
    """AdvCL: BN branch of the encoder whose features are clustered."""
    advcl_kmeans_iters: int = 20
    """AdvCL: FAISS k-means iterations (seeded by the run seed: deterministic)."""
    advcl_weak_padding: int = 4
    """AdvCL: weak view = random crop with this zero padding + horizontal flip."""
    rocl_lambda: float = 256.0
    """RoCL: the adversarial pair term NTX(adv, t2) is weighted 1 / rocl_lambda."""
    byorl_tau: float = 0.996
    """BYORL: base EMA rate of the target network, τ = 1 - (1 - τ_base)(cos(π p) + 1)/2 at run
    progress p (the share of the run done, in train.lr_schedule's unit), as in BYOL."""
    byorl_pred_hidden: int = 0
    """BYORL: hidden width of the predictor (0 = that of the projector head)."""
    init: str = ""
    """A pretraining checkpoint whose model (and method-owned modules) this run starts from
    (`rcs train --init`; not a resume: this run has its own folder and settings)."""
    init_continue: bool = False
    """With init: also take its optimizer state, epoch, step and samples seen, so the lr
    schedule and the selection schedule go on from there (a shared warm-up); otherwise both
    start fresh."""
    bn_recalibration: int = 2
    """After each epoch trained on a coreset, re-estimate every BN layer's running statistics
    (the ones attacks, selections and fine-tuning use) from this many random full-data batches
    run through the method's own training forward (0 = off: the statistics are those of the
    coreset batches, as in the published code). A selected coreset is not a random sample, and
    its statistics moved an RCS-trained encoder's held-out RD far more than its weights did
    (docs/results/coreset_quality)."""
    clae_alpha: float = 1.0
    """CLAE: weight of the adversarial pair term, L = NTX(t1, t2) + clae_alpha NTX(t1, adv)."""
    ifm_epsilon: float = 0.1
    """IFM: budget ε: positive cosines lowered and negative cosines raised by ε (published
    0.05 / 0.1 / 0.2 on ImageNet-100; 0.1 best)."""
    ifm_alpha: float = 1.0
    """IFM: L = (NTX + α NTX_ε) / (1 + α)."""
    hcl_beta: float = 1.0
    """HCL: concentration β of the hard-negative importance weights exp(β s / t)."""
    hcl_tau_plus: float = 0.1
    """HCL: class prior τ⁺ of the debiasing term (0 = no debiasing)."""
    mochi_hard: int = 1024
    """MoCHi: N, the hardest negatives per anchor that are mixed (capped at the 2B - 2
    negatives of the batch)."""
    mochi_mix: int = 1024
    """MoCHi: s, synthetic negatives per anchor mixed from two hard negatives."""
    mochi_query_mix: int = 256
    """MoCHi: s', synthetic negatives per anchor mixed from the anchor and a hard negative."""
    ainfonce_variant: str = "iphn"
    """A-InfoNCE (arocl): ip (adversarial views as inferior positives) | hn (hard-negative
    estimator) | iphn (both; published best)."""
    ainfonce_ip_degree: float = 0.2
    """A-InfoNCE: share γ of the clean-anchor -> adversarial-positive terms (the adversarial
    anchor -> clean positive terms get 1 - γ); published 0.2."""
    ainfonce_adv_weight: float = 1.0
    """A-InfoNCE: weight of the adversarial pair terms under ip (published 1)."""
    ainfonce_tau_plus: float = 0.12
    """A-InfoNCE / aacl: τ⁺ of the hard-negative estimator (published 0.12)."""
    ainfonce_beta: float = 1.0
    """A-InfoNCE / aacl: β of the hard-negative estimator (published 1.0)."""
    memory_size: int = 65536
    """AdCo / CaCo: K, the number of learnable memory entries (published 65536 on ImageNet;
    at most the dataset size here: the bank starts from the key encoder's embeddings)."""
    memory_lr: float = 3.0
    """AdCo / CaCo: learning rate of the memory bank's own SGD (published 3)."""
    memory_temperature: float = 0.02
    """AdCo / CaCo: temperature of the memory update (AdCo 0.02, CaCo 0.08)."""
    memory_momentum: float = 0.9
    """AdCo / CaCo: momentum of the memory bank's SGD."""
    memory_weight_decay: float = 1e-4
    """AdCo / CaCo: weight decay of the memory bank (AdCo 1e-4, CaCo 0)."""
    key_momentum: float = 0.999
    """AdCo / CaCo: EMA rate of the momentum key encoder (AdCo 0.999, CaCo 0.99)."""
    layerwise_stages: list[int] = field(default_factory=list)
    """Layer-wise contrastive loss: encoder stages k (1-based) whose pooled output gets its own
    projection head and contrastive loss L_k; L = L_method + Σ_k α_k L_k. Empty = off."""
    layerwise_weights: list[float] = field(default_factory=list)
    """Layer-wise contrastive loss: α_k, one per entry of layerwise_stages."""
    amp: str = "auto"
    """auto (bf16 on GPU, off on CPU) | bf16 | off"""
    channels_last: bool = True
    """Run the model in channels_last memory format on CUDA (faster convolutions there;
    ignored on CPU, where it gains nothing and torch's one-thread backward can crash)."""
    compile: bool = False
    """Wrap the training forward in torch.compile."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0 = off)."""
    checkpoint_every: int = 1
    """Epochs between checkpoints (a checkpoint is also written on SIGTERM/SIGUSR1)."""
    checkpoint_every_steps: int = 0
    """Also checkpoint every N steps inside an epoch (0 = only at epoch ends); for long epochs."""
    deterministic: bool = False
    """Use deterministic algorithms (exact resume on GPU costs some speed; CPU is deterministic)."""
    log_every: int = 10
    """Steps between metric records."""

    def validate(self) -> None:
        _check(self.epochs > 0, "train.epochs must be > 0")
        _check(self.batch_size > 1, "train.batch_size must be > 1 (contrastive losses need pairs)")
        _in("train.optimizer", self.optimizer, ("lars", "sgd"))
        _check(self.lr > 0, "train.lr must be > 0")
        _check(self.temperature > 0, "train.temperature must be > 0")
        _in("train.air_variant", self.air_variant, ("corrected", "faithful"))
        _check(self.tikhonov_lambda >= 0, "train.tikhonov_lambda must be >= 0 (0 = off)")
        _check(len(self.advcl_clusters) > 0 and all(k >= 2 for k in self.advcl_clusters),
               f"train.advcl_clusters={self.advcl_clusters} must be a non-empty list of cluster "
               "counts >= 2 (published [2, 10, 50, 100, 500])")
        _check(self.advcl_ce_weight >= 0, "train.advcl_ce_weight must be >= 0")
        _check(self.advcl_base_temperature > 0, "train.advcl_base_temperature must be > 0")
        _check(self.advcl_radius >= 0, "train.advcl_radius must be >= 0")
        _in("train.advcl_attack_mode", self.advcl_attack_mode, ("train", "eval"))
        _check(self.advcl_pseudo_every >= 0, "train.advcl_pseudo_every must be >= 0")
        _check(self.advcl_kmeans_iters > 0, "train.advcl_kmeans_iters must be > 0")
        _check(self.advcl_weak_padding >= 0, "train.advcl_weak_padding must be >= 0")
        _check(self.rocl_lambda > 0, "train.rocl_lambda must be > 0")
        _check(0.0 <= self.byorl_tau <= 1.0, "train.byorl_tau must be in [0, 1]")
        _check(self.byorl_pred_hidden >= 0, "train.byorl_pred_hidden must be >= 0")
        _check(self.clae_alpha >= 0, "train.clae_alpha must be >= 0")
        _check(self.ifm_epsilon >= 0 and self.ifm_alpha >= 0,
               "train.ifm_epsilon and train.ifm_alpha must be >= 0")
        _check(self.hcl_beta >= 0, "train.hcl_beta must be >= 0")
        _check(0.0 <= self.hcl_tau_plus < 1.0 and 0.0 <= self.ainfonce_tau_plus < 1.0,
               "train.hcl_tau_plus and train.ainfonce_tau_plus must be in [0, 1)")
        _check(self.mochi_hard >= 2 and self.mochi_mix >= 0 and self.mochi_query_mix >= 0,
               "train.mochi_hard must be >= 2, train.mochi_mix and train.mochi_query_mix >= 0")
        _in("train.ainfonce_variant", self.ainfonce_variant, ("ip", "hn", "iphn"))
        _check(0.0 <= self.ainfonce_ip_degree <= 1.0, "train.ainfonce_ip_degree must be in [0, 1]")
        _check(self.ainfonce_adv_weight >= 0 and self.ainfonce_beta >= 0,
               "train.ainfonce_adv_weight and train.ainfonce_beta must be >= 0")
        _check(self.memory_size >= 1, "train.memory_size must be >= 1")
        _check(self.memory_lr >= 0 and self.memory_momentum >= 0
               and self.memory_weight_decay >= 0,
               "train.memory_lr, train.memory_momentum and train.memory_weight_decay must be >= 0")
        _check(self.memory_temperature > 0, "train.memory_temperature must be > 0")
        _check(0.0 <= self.key_momentum <= 1.0, "train.key_momentum must be in [0, 1]")
        _check(len(self.layerwise_weights) == len(self.layerwise_stages),
               f"train.layerwise_weights={self.layerwise_weights} needs one weight per entry of "
               f"train.layerwise_stages={self.layerwise_stages}")
        _check(all(k >= 1 for k in self.layerwise_stages)
               and len(set(self.layerwise_stages)) == len(self.layerwise_stages),
               f"train.layerwise_stages={self.layerwise_stages} must be distinct 1-based stage "
               "numbers (e.g. [2, 3])")
        _in("train.amp", self.amp, ("auto", "bf16", "off"))
        _check(self.bn_recalibration >= 0, "train.bn_recalibration must be >= 0 (0 = off)")
        _check(self.lr_warmup_epochs >= 0, "train.lr_warmup_epochs must be >= 0")
        _in("train.lr_schedule", self.lr_schedule, ("epoch", "samples"))
        _check(0 <= self.min_lr <= self.lr, f"train.min_lr={self.min_lr} must be in [0, "
               f"train.lr={self.lr}]")
        self.attack.validate("train.attack")


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
        _check(0.0 < self.fraction <= 1.0,
               f"selection.fraction={self.fraction} must be in (0, 1] (e.g. 0.2 keeps 20%)")
        _check(self.warmup_epochs >= 0, "selection.warmup_epochs must be >= 0")
        _check(self.every >= 0, "selection.every must be >= 0 (0 = select once, never again)")
        _check(self.rounds > 0, "selection.rounds must be > 0")
        _check(self.eta > 0, "selection.eta must be > 0")
        _check(0.0 < self.pool <= 1.0, f"selection.pool={self.pool} must be in (0, 1]")
        _in("selection.granularity", self.granularity, ("sample", "batch"))
        _in("selection.rd_distance", self.rd_distance, ("kl", "minmax_kl"))
        _check(not (self.class_balanced and self.granularity == "batch"
                    and self.method == "rcs"),
               "selection.class_balanced needs selection.granularity=sample for RCS (whole "
               "minibatches cannot meet per-class quotas)")
        _in("selection.val_attack_start", self.val_attack_start, ("uniform", "trades"))
        _in("selection.store", self.store, ("memory", "disk"))
        _in("selection.index", self.index, ("flat", "ivfpq"))
        _check(self.scope == "head" or (self.scope.startswith("last-")
                                        and self.scope[5:].isdigit()),
               f"selection.scope={self.scope!r} must be 'head' or 'last-<k>'")
        _check(self.sketch_dim > 0, "selection.sketch_dim must be > 0")
        _check(self.candidate_batch == 0 or self.candidate_batch > 1,
               "selection.candidate_batch must be > 1 (or 0 for train.batch_size)")
        _check(self.val_reattack_every >= 0,
               "selection.val_reattack_every must be >= 0 (0 = never re-attack U)")
        _in("selection.gradients", self.gradients, ("exact", "sketch"))


@dataclass
class FinetuneModeConfig:
    """One fine-tuning mode's optimisation (SGD + MultiStepLR x0.1). Unset values (null) come
    from the published RobustSSL protocol of the pretraining method (``finetune.protocol``)."""

    epochs: int | None = None
    """Epochs (null = protocol: SLF/ALF 25; AFF 25 for DynACL-style, 100 for ACL/ACL-AIR)."""
    lr: float | None = None
    """Initial lr (null = protocol: SLF/ALF 0.01 on CIFAR-10, 0.05 on CIFAR-100, 0.1 on STL-10
    at 96 px, 0.01 on STL-10 at 32 px; AFF 0.1)."""
    batch_size: int | None = None
    """Batch size (null = protocol: SLF/ALF 512, 128 on STL-10 at 32 px; AFF 128). Fine-tuning
    runs in one process, so this is the whole (global) batch."""
    milestones: list[int] | None = None
    """Epochs after which the lr is multiplied by 0.1 (null = protocol: 10,20 / 15,20 / 40,60;
    DynACL's AFF on STL-10 at 96 px 10,20)."""
    weight_decay: float = 2e-4
    """SGD weight decay (published 2e-4)."""
    momentum: float = 0.9
    """SGD momentum (published 0.9)."""

    def validate(self, where: str) -> None:
        _check(self.epochs is None or self.epochs > 0, f"{where}.epochs must be > 0")
        _check(self.lr is None or self.lr > 0, f"{where}.lr must be > 0")
        _check(self.batch_size is None or self.batch_size > 0, f"{where}.batch_size must be > 0")
        _check(self.milestones is None or all(m > 0 for m in self.milestones),
               f"{where}.milestones must be positive epochs")
        _check(self.weight_decay >= 0 and self.momentum >= 0,
               f"{where}.weight_decay and {where}.momentum must be >= 0")


@dataclass
class FinetuneConfig:
    """RobustSSL fine-tuning; every mode is configured on its own (no carry-over)."""

    modes: list[str] = field(default_factory=lambda: ["slf"])
    """Modes run by `rcs finetune` without --mode: slf | alf | aff."""
    protocol: str = "auto"
    """Published settings that fill unset mode values: auto (from the checkpoint's train.method) |
    acl | air | dynacl | dynacl_air | advcl | none (every mode value must then be set)."""
    slf: FinetuneModeConfig = field(default_factory=FinetuneModeConfig)
    alf: FinetuneModeConfig = field(default_factory=FinetuneModeConfig)
    aff: FinetuneModeConfig = field(default_factory=FinetuneModeConfig)
    trades_beta: float = 6.0
    """AFF: weight of the TRADES KL term."""
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=10))
    """ALF (CE) and AFF (TRADES KL) training attack: PGD-10, eps 8/255, step 2/255."""
    aff_dual_bn: bool = True
    """AFF: clean images through the 'normal' BN, adversarial ones through 'pgd' (the published
    default); false fine-tunes the exported single-BN branch only (as for AdvCL)."""
    branch: str = "pgd"
    """BN branch of the pretrained encoder that is exported and fine-tuned."""
    padding: int = 4
    """Fine-tuning augmentation: random crop with this zero padding, then a horizontal flip."""
    noise_sigma: float = 0.0
    """SLF / ALF: add N(0, σ²) noise to every training image (the Gaussian-augmentation base
    classifier of randomized smoothing, as RUSH trains it); 0 = off."""
    label_fraction: float = 1.0
    """Share of the labelled training split used (1.0, 0.1, 0.01 in the label-efficiency
    experiments): round(fraction * N) images, class-balanced, drawn with finetune.seed."""
    seed: int = 0
    """Seed of fine-tuning: batch order, augmentation, attack starts, label subset."""

    def validate(self) -> None:
        for m in self.modes:
            _in("finetune.modes entry", m, ("slf", "alf", "aff"))
        _in("finetune.protocol", self.protocol,
            ("auto", "acl", "air", "dynacl", "dynacl_air", "advcl", "none"))
        _check(0.0 < self.label_fraction <= 1.0,
               f"finetune.label_fraction={self.label_fraction} must be in (0, 1] (e.g. 0.01 = 1%)")
        for m in ("slf", "alf", "aff"):
            getattr(self, m).validate(f"finetune.{m}")
        _check(self.trades_beta >= 0, "finetune.trades_beta must be >= 0")
        _check(self.padding >= 0, "finetune.padding must be >= 0")
        _check(self.noise_sigma >= 0, "finetune.noise_sigma must be >= 0 (0 = off)")
        self.attack.validate("finetune.attack")


CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
    "pixelate", "jpeg_compression",
)
"""The 15 CIFAR-10-C / CIFAR-100-C corruptions of RobustBench (Hendrycks & Dietterich 2019)."""


@dataclass
class EvalConfig:
    """Evaluation of a classifier: clean, PGD-20, AutoAttack, corruptions, smoothing."""

    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd20"])
    """clean | pgd20 | autoattack | corruptions | smoothing"""
    pgd: AttackConfig = field(default_factory=lambda: AttackConfig(steps=20))
    """PGD evaluation attack (CE, eval mode, uniform random start): 20 steps of 2/255, eps 8/255."""
    limit: int = 0
    """Evaluate clean / PGD on the first ``limit`` test images only (0 = the whole test split)."""
    autoattack_n_ex: int = 0
    """Evaluate AutoAttack on the first n test images only (0 = all)."""
    autoattack_version: str = "standard"
    """standard | plus | rand (AutoAttack's versions)."""
    corruptions_root: str = ""
    """Folder with CIFAR-10-C / CIFAR-100-C style files: <corruption>.npy + labels.npy."""
    corruptions: list[str] = field(default_factory=list)
    """Corruptions to evaluate (empty = the 15 standard ones)."""
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Corruption severities evaluated (1..5)."""
    corruptions_n_ex: int = 0
    """Images per corruption and severity (0 = all, 10,000 for CIFAR-10-C)."""
    batch_size: int = 256
    """Images per evaluation batch (clean, PGD, AutoAttack, corruptions)."""
    seed: int = 1
    """Seed of the PGD random starts (the ACL code seeds 1 before its test loop)."""
    smoothing_sigma: float = 0.25
    """Randomized smoothing (Cohen et al. 2019): std σ of the Gaussian noise (0.12 / 0.25 / 0.5
    / 1.0 in the paper)."""
    smoothing_n0: int = 100
    """CERTIFY: noise samples that pick the top class (published 100)."""
    smoothing_n: int = 100000
    """CERTIFY: noise samples that bound its probability (published 100,000)."""
    smoothing_alpha: float = 0.001
    """CERTIFY: failure probability α of the Clopper-Pearson bound (published 0.001)."""
    smoothing_radii: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """L2 radii at which certified accuracy is reported."""
    smoothing_n_ex: int = 500
    """Certify the first n test images (0 = all; Cohen et al. certify 500 CIFAR-10 images)."""
    smoothing_batch: int = 1000
    """Noisy copies per forward pass."""

    def validate(self) -> None:
        for a in self.attacks:
            _in("eval.attacks entry", a,
                ("clean", "pgd20", "autoattack", "corruptions", "smoothing"))
        _check(self.smoothing_sigma > 0, "eval.smoothing_sigma must be > 0")
        _check(self.smoothing_n0 >= 1 and self.smoothing_n >= 1 and self.smoothing_batch >= 1,
               "eval.smoothing_n0, eval.smoothing_n and eval.smoothing_batch must be >= 1")
        _check(0.0 < self.smoothing_alpha < 1.0, "eval.smoothing_alpha must be in (0, 1)")
        _check(all(r >= 0 for r in self.smoothing_radii) and len(self.smoothing_radii) > 0,
               "eval.smoothing_radii must be a non-empty list of radii >= 0")
        _check(self.smoothing_n_ex >= 0, "eval.smoothing_n_ex must be >= 0 (0 = all)")
        for c in self.corruptions:
            _in("eval.corruptions entry", c, CORRUPTIONS)
        _check(all(1 <= s <= 5 for s in self.severities) and len(self.severities) > 0,
               "eval.severities must be a non-empty list of values in 1..5")
        _in("eval.autoattack_version", self.autoattack_version, ("standard", "plus", "rand"))
        _check(self.limit >= 0 and self.autoattack_n_ex >= 0 and self.corruptions_n_ex >= 0,
               "eval.limit, eval.autoattack_n_ex and eval.corruptions_n_ex must be >= 0")
        _check(self.batch_size > 0, "eval.batch_size must be > 0")
        self.pgd.validate("eval.pgd")


@dataclass
class SlurmConfig:
    """Where and how `rcs submit` / `--slurm` runs a job (submitit on SLURM; see slurm/)."""

    profile: str = ""
    """Cluster profile slurm/profiles/<name>.yaml (or a YAML path) supplying defaults for the
    keys below; keys set explicitly (config file, --set, flags) win over the profile."""
    partition: str = ""
    """SLURM partition (empty: the cluster's default partition)."""
    nodes: int = 1
    """Nodes; `rcs train` runs one DDP group over all of them (other commands use one task)."""
    gpus_per_node: int = 0
    """GPUs per node (0 = a CPU job); rcs runs one task (one DDP rank) per GPU."""
    tasks_per_node: int = 0
    """Tasks (DDP ranks) per node; 0 = automatic: gpus_per_node with GPUs, else 1."""
    cpus_per_task: int = 2
    """CPUs per task (per DDP rank)."""
    mem_gb: float = 8.0
    """Memory per node in GB."""
    time_min: int = 60
    """Time limit of one job run in minutes (a timed-out run checkpoints and requeues itself)."""
    account: str = ""
    """Account charged for the job (empty: the user's default)."""
    qos: str = ""
    """Quality of service (empty: the default)."""
    constraint: str = ""
    """Node features, e.g. 'a100' or 'volta32gb'."""
    array_parallelism: int = 16
    """Maximum array tasks (sweep points) running at the same time."""
    extra_sbatch: list[str] = field(default_factory=list)
    """Extra sbatch options, e.g. ['--exclusive', '--mail-type=END', '--reservation=x']."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run in the job script before the job, e.g. ['module load cuda/12.1']."""
    folder: str = ""
    """Job folder (submitit pickles, per-rank logs); '%j' becomes the job id. Empty: <run>/slurm/%j
    (<run> = the run folder of train, the output folder of select, the checkpoint's folder of
    finetune / eval)."""
    job_name: str = ""
    """Job name (empty: rcs-<command>-<run name>)."""
    signal_delay_s: int = 120
    """Seconds before the time limit at which the job is told to checkpoint and requeue itself."""
    max_timeouts: int = 3
    """How many times a job that reaches its time limit is requeued (preemptions: no limit)."""
    executor: str = "slurm"
    """slurm | local (submitit's local executor: the same job code in local processes, no
    cluster; for tests and debugging)."""

    def ntasks_per_node(self) -> int:
        """Tasks per node after resolving 0 = automatic (one per GPU, else one)."""
        if self.tasks_per_node:
            return self.tasks_per_node
        return self.gpus_per_node if self.gpus_per_node > 0 else 1

    def validate(self) -> None:
        _check(self.nodes > 0, f"slurm.nodes={self.nodes} must be > 0")
        _check(self.tasks_per_node >= 0, f"slurm.tasks_per_node={self.tasks_per_node} must be "
               ">= 0 (0 = one task per GPU, or 1 without GPUs)")
        _check(self.gpus_per_node >= 0, f"slurm.gpus_per_node={self.gpus_per_node} must be >= 0")
        _check(not (self.gpus_per_node > 0 and self.tasks_per_node not in
                    (0, self.gpus_per_node)),
               f"slurm.tasks_per_node={self.tasks_per_node} with slurm.gpus_per_node="
               f"{self.gpus_per_node}: rcs runs one task per GPU; set slurm.tasks_per_node=0 "
               "(automatic) or equal to slurm.gpus_per_node")
        _check(self.cpus_per_task > 0, f"slurm.cpus_per_task={self.cpus_per_task} must be > 0")
        _check(self.mem_gb > 0, f"slurm.mem_gb={self.mem_gb} must be > 0")
        _check(self.time_min > 0, f"slurm.time_min={self.time_min} must be > 0")
        _check(self.array_parallelism > 0, "slurm.array_parallelism must be > 0")
        _check(self.max_timeouts >= 0, "slurm.max_timeouts must be >= 0")
        _check(0 <= self.signal_delay_s < self.time_min * 60,
               f"slurm.signal_delay_s={self.signal_delay_s} must be >= 0 and shorter than the "
               f"time limit ({self.time_min * 60} s)")
        _in("slurm.executor", self.executor, ("slurm", "local"))
        for line in self.extra_sbatch:
            opt = line.strip()
            opt = opt[len("#SBATCH"):].strip() if opt.startswith("#SBATCH") else opt
            _check(opt.startswith("--") and len(opt) > 2 and " " not in opt.split("=")[0],
                   f"slurm.extra_sbatch entry {line!r} must be a long sbatch option such as "
                   "'--exclusive' or '--mail-type=END'")


LOGGERS = ("jsonl", "csv", "tensorboard", "wandb")


@dataclass
class LogConfig:
    """Where run metrics go: metrics.jsonl always, plus the loggers listed here."""

    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    """Any of jsonl (always on) | csv (<run>/csv/<event>.csv) | tensorboard (<run>/tb; needs the
    tensorboard package) | wandb (<run>/wandb; needs wandb), for pretraining, selection and
    fine-tuning alike."""
    wandb_project: str = "rcs"
    """W&B project the runs are logged to."""
    wandb_entity: str = ""
    """W&B entity (team or user); empty: your default."""
    wandb_group: str = ""
    """W&B group of the runs (e.g. a sweep's name); empty: none."""
    wandb_mode: str = "offline"
    """offline (default: no network; upload later with `wandb sync <run>/wandb/offline-run-*`) |
    online | disabled."""
    wandb_dir: str = ""
    """Folder in which W&B makes its wandb/ folder; empty: the run folder (<run>/wandb)."""

    def validate(self) -> None:
        for n in self.loggers:
            _in("log.loggers entry", n, LOGGERS)
        _in("log.wandb_mode", self.wandb_mode, ("offline", "online", "disabled"))


@dataclass
class RunConfig:
    """A whole job: data, model, training, selection, fine-tuning, evaluation, launching."""

    name: str = "run"
    """Name of the run (reports, W&B, SLURM job names)."""
    out_dir: str = "runs/run"
    """Run folder: config.yaml, metrics.jsonl, checkpoint.pt, coresets/, summary.json."""
    seed: int = 0
    """Seed of everything random in the run (data split, batch order, augmentation, attacks)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    log: LogConfig = field(default_factory=LogConfig)
    """Metric loggers (jsonl, csv, tensorboard, wandb)."""

    def validate(self) -> RunConfig:
        _check(bool(self.out_dir), "out_dir must not be empty")
        _check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
               f"device={self.device!r} is not one of auto, cpu, cuda, cuda:N, mps "
               "(e.g. --set device=cuda:0)")
        for section in ("data", "augment", "model", "train", "selection", "finetune", "eval",
                        "slurm", "log"):
            getattr(self, section).validate()
        self.selection.candidate_batch = resolve_candidate_batch(  # the saved config shows it
            self.selection.candidate_batch, self.train.batch_size)
        _check(self.selection.method != "rcs" or self.data.val_fraction > 0,
               "selection.method=rcs needs a validation split U: set data.val_fraction > 0 "
               "(e.g. 0.01, as published)")
        return self
