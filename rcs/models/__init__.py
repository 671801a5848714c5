"""Models: multi-BN CIFAR ResNets and WRNs, ACL projection heads, export to single-BN.

``build_model(cfg)`` gives a :class:`RobustModel`; ``model(x, bn="pgd")`` runs the projection on
BN branch ``pgd``. ``export_classifier(model, "pgd", num_classes=10)`` gives a plain
single-BN network ([0,1] NCHW -> logits) for fine-tuning and attack libraries.
"""

from rcs.models.export import (
    Classifier,
    export_classifier,
    export_encoder,
    single_bn_state_dict,
)
from rcs.models.heads import HEADS, ACLHead, AdvCLHead, BYOLHead, MLP2Head, RoCLHead
from rcs.models.model import ARCHS, RobustModel, build_model, register_arch
from rcs.models.multibn import (
    MultiBatchNorm,
    NormFactory,
    branch,
    multi_bn,
    multi_bn_layers,
    plain_bn,
    set_branch,
)
from rcs.models.normalize import NORMALIZATIONS, Normalize, build_normalize
from rcs.models.resnet import BasicBlock, Bottleneck, ResNet
from rcs.models.wrn import WideResNet
from rcs.train.checkpoint import load_state_dict_strict

__all__ = [
    "ARCHS", "HEADS", "NORMALIZATIONS", "ACLHead", "AdvCLHead", "BYOLHead", "BasicBlock",
    "Bottleneck", "Classifier", "MLP2Head", "MultiBatchNorm", "NormFactory", "Normalize",
    "ResNet", "RoCLHead", "RobustModel", "WideResNet", "branch", "build_model",
    "build_normalize", "export_classifier", "export_encoder", "load_state_dict_strict",
    "multi_bn", "multi_bn_layers", "plain_bn", "register_arch", "set_branch",
    "single_bn_state_dict",
]
