"""Published RobustSSL fine-tuning settings per pretraining method, and their resolution.

The table is ``setup_hyperparameter`` of the AIR / RobustSSL-Benchmark fine-tuning code
(``shared/reference/acl_family.md`` §3.3, ``rcs_reference.md`` §3.1), CIFAR-10. Every mode is
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

On CIFAR-100 the linear modes use lr 0.05 (``rcs_reference.md`` §3.1). ``sat`` (supervised
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


def resolve_mode(cfg: FinetuneConfig, mode: str, method: str, dataset: str = "") -> ModeSettings:
    """Settings of ``mode``: the config's values where set, the protocol's elsewhere."""
    if mode not in MODES:
        raise ConfigError(f"fine-tuning mode {mode!r} is not one of {', '.join(MODES)}")
    name = protocol_name(cfg, method)
    own: FinetuneModeConfig = getattr(cfg, mode)
    base: dict[str, object] = {}
    if name != "none":
        base = dict(PROTOCOLS[name][mode])
        if mode in ("slf", "alf") and dataset in LINEAR_LR_BY_DATASET:
            base["lr"] = LINEAR_LR_BY_DATASET[dataset]
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
