"""Published RobustSSL fine-tuning settings per pretraining method, and their resolution.

The table is ``setup_hyperparameter`` of the AIR / RobustSSL-Benchmark fine-tuning code
(``PUBLISHED_METHODS.md`` A3.3, ``PUBLISHED_METHODS.md`` R3.1), CIFAR-10. Every mode is
resolved on its own: the published scripts let a mode inherit the previous mode's epochs under
``--mode ALL`` (e.g. DynACL-AIR's ALF and AFF ran 5 epochs); here each mode gets its own row.

==============  ==================================  =====================================
pretraining     SLF / ALF (bs 512)                  AFF (bs 128, lr 0.1)
==============  ==================================  =====================================
acl, sat        25 ep, lr 0.01, milestones 10,20    100 ep, milestones 40,60
air (ACL-AIR)   SLF lr 0.005, ALF lr 0.01; 25 ep    100 ep, milestones 40,60
dynacl          25 ep, lr 0.01, milestones 10,20    25 ep, milestones 15,20
dynacl_air      SLF 5 ep; ALF 25 ep; lr 0.01        25 ep, milestones 15,20
advcl           25 ep, lr 0.01, milestones 15,20    25 ep, milestones 15,20
==============  ==================================  =====================================

Downstream dataset rows (``PUBLISHED_METHODS.md`` R3.1, ``setup_hyperparameter`` of the published
RCS fine-tuning code; :func:`dataset_overrides`):

==================  ============================  =====================================
downstream          SLF / ALF                     AFF
==================  ============================  =====================================
CIFAR-10            the method's row (above)      the method's row
CIFAR-100           lr 0.05                       the method's row
STL-10 at 96 px     lr 0.1, batch 512             DynACL: milestones 10,20
STL-10 at 32 px     lr 0.01, batch 128            the method's row
==================  ============================  =====================================

The STL-10 row is chosen by the side of the downstream training images (> 32 px: the 96-px row;
rcs's STL-10 reader gives the native 96 px). No published STL-10 AFF row is known for the other
methods (DynACL-AIR included): they keep their CIFAR-10 AFF settings. ``sat`` (supervised
PGD-AT) has no published RobustSSL row; it uses the ACL row. ``advcl`` is the RobustSSL-Benchmark
row of AdvCL (the Benchmark also fine-tunes it with ``--dualBN 0``: set
``finetune.aff_dual_bn: false``, as configs/cifar10_advcl_rcs.yaml does). RoCL, BYORL and the
Tikhonov method have no published row in this protocol; they use the ACL row. Optimiser: SGD,
momentum 0.9, weight decay 2e-4, lr x0.1 after each milestone epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcs.config.schema import FinetuneConfig, FinetuneModeConfig
from rcs.errors import ConfigError

MODES = ("slf", "alf", "aff")

LINEAR = {"epochs": 25, "lr": 0.01, "batch_size": 512, "milestones": [10, 20]}
AFF_LONG = {"epochs": 100, "lr": 0.1, "batch_size": 128, "milestones": [40, 60]}
AFF_SHORT = {"epochs": 25, "lr": 0.1, "batch_size": 128, "milestones": [15, 20]}

PROTOCOLS: dict[str, dict[str, dict[str, object]]] = {
    "acl": {"slf": LINEAR, "alf": LINEAR, "aff": AFF_LONG},
    "air": {"slf": {**LINEAR, "lr": 0.005}, "alf": LINEAR, "aff": AFF_LONG},
    "dynacl": {"slf": LINEAR, "alf": LINEAR, "aff": AFF_SHORT},
    "dynacl_air": {"slf": {**LINEAR, "epochs": 5}, "alf": LINEAR, "aff": AFF_SHORT},
    "advcl": {"slf": {**LINEAR, "milestones": [15, 20]}, "alf": {**LINEAR, "milestones": [15, 20]},
              "aff": AFF_SHORT},
}
METHOD_PROTOCOL = {"acl": "acl", "sat": "acl", "air": "air", "dynacl": "dynacl",
                   "dynacl_air": "dynacl_air", "advcl": "advcl", "rocl": "acl", "byorl": "acl",
                   "tikhonov": "acl", "clae": "acl", "ifm": "acl", "hcl": "acl", "mochi": "acl",
                   "aacl": "acl", "arocl": "acl", "adco": "acl", "caco": "acl", "rush": "acl"}
"""Which published row a pretraining ``train.method`` uses under ``finetune.protocol=auto``."""

LINEAR_LR_BY_DATASET = {"cifar100": 0.05}
STL10_LINEAR = {96: {"lr": 0.1, "batch_size": 512}, 32: {"lr": 0.01, "batch_size": 128}}
"""SLF / ALF on STL-10 by resolution (96 px native, or downscaled to 32 px)."""
STL10_AFF_96 = {"dynacl": {"milestones": [10, 20]}}
"""AFF on STL-10 at 96 px, per protocol row."""


def dataset_overrides(name: str, mode: str, dataset: str, image_size: int | None = None
                      ) -> dict[str, object]:
    """Changes to protocol row ``name``'s ``mode`` settings for the downstream ``dataset``
    whose images have side ``image_size`` (None: the dataset's native size; see module doc)."""
    linear = mode in ("slf", "alf")
    if dataset == "stl10":
        res = 96 if image_size is None or image_size > 32 else 32
        if linear:
            return dict(STL10_LINEAR[res])
        return dict(STL10_AFF_96.get(name, {})) if res == 96 else {}
    if linear and dataset in LINEAR_LR_BY_DATASET:
        return {"lr": LINEAR_LR_BY_DATASET[dataset]}
    return {}


@dataclass(frozen=True)
class ModeSettings:
    """The concrete optimisation of one mode (every value set)."""

    mode: str
    epochs: int
    lr: float
    batch_size: int
    milestones: tuple[int, ...]
    weight_decay: float
    momentum: float
    protocol: str

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "epochs": self.epochs, "lr": self.lr,
                "batch_size": self.batch_size, "milestones": list(self.milestones),
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "protocol": self.protocol}


def protocol_name(cfg: FinetuneConfig, method: str) -> str:
    """The protocol row used: ``cfg.protocol``, or the pretraining method's under 'auto'."""
    if cfg.protocol != "auto":
        return cfg.protocol
    if method not in METHOD_PROTOCOL:
        raise ConfigError(f"no published fine-tuning protocol for pretraining method {method!r}; "
                          f"set finetune.protocol to one of {', '.join(PROTOCOLS)} or to none "
                          "and give every finetune.<mode> value")
    return METHOD_PROTOCOL[method]


def resolve_mode(cfg: FinetuneConfig, mode: str, method: str, dataset: str = "",
                 image_size: int | None = None) -> ModeSettings:
    """Settings of ``mode``: the config's values where set, the protocol's elsewhere (the
    method's row, changed for the downstream ``dataset`` of side ``image_size`` px)."""
    if mode not in MODES:
        raise ConfigError(f"fine-tuning mode {mode!r} is not one of {', '.join(MODES)}")
    name = protocol_name(cfg, method)
    own: FinetuneModeConfig = getattr(cfg, mode)
    base: dict[str, object] = {}
    if name != "none":
        base = dict(PROTOCOLS[name][mode]) | dataset_overrides(name, mode, dataset, image_size)
    values = {}
    for key in ("epochs", "lr", "batch_size", "milestones"):
        v = getattr(own, key)
        if v is None:
            v = base.get(key)
        if v is None:
            raise ConfigError(f"finetune.{mode}.{key} is not set and finetune.protocol=none; "
                              f"set it (e.g. --set finetune.{mode}.{key}=...)")
        values[key] = v
    return ModeSettings(mode=mode, epochs=int(values["epochs"]), lr=float(values["lr"]),
                        batch_size=int(values["batch_size"]),
                        milestones=tuple(int(m) for m in values["milestones"]),
                        weight_decay=float(own.weight_decay), momentum=float(own.momentum),
                        protocol=name)
