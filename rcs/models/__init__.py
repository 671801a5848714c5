"""Models: multi-BN CIFAR ResNets and WRNs, ACL projection heads, export to single-BN.

``build_model(cfg)`` gives a :class:`RobustModel`; ``model(x, bn="pgd")`` runs the projection on
BN branch ``pgd``. ``export_classifier(model, "pgd", num_classes=10)`` gives a plain
single-BN network ([0,1] NCHW -> logits) for fine-tuning and attack libraries;
``save_export`` / ``build_exported`` / ``load_exported`` move it between libraries as a plain
state dict or safetensors with a JSON sidecar. ``convert_multibn(net)`` gives any network
(torchvision, timm, your own) routed multi-BN layers; ``model.arch`` may name its factory.
"""

from rcs.models.export import (
    Classifier,
    export_classifier,
    export_encoder,
    single_bn_state_dict,
)
from rcs.models.external import ExternalEncoder
from rcs.models.heads import HEADS, ACLHead, AdvCLHead, BYOLHead, MLP2Head, RoCLHead, register_head
from rcs.models.model import (
    ARCHS,
    RobustModel,
    build_encoder,
    build_model,
    check_arch,
    check_head,
    register_arch,
)
from rcs.models.multibn import (
    MultiBatchNorm,
    NormFactory,
    Routed,
    branch,
    convert_multibn,
    multi_bn,
    multi_bn_layers,
    plain_bn,
    revert_multibn,
    set_branch,
)
from rcs.models.normalize import NORMALIZATIONS, Normalize, build_normalize
from rcs.models.portable import build_exported, export_meta, load_exported, save_export
from rcs.models.resnet import BasicBlock, Bottleneck, ResNet
from rcs.models.wrn import WideResNet
from rcs.utils.checkpoint_io import load_state_dict_strict

__all__ = [
    "ARCHS", "HEADS", "NORMALIZATIONS", "ACLHead", "AdvCLHead", "BYOLHead", "BasicBlock",
    "Bottleneck", "Classifier", "ExternalEncoder", "MLP2Head", "MultiBatchNorm",
    "NormFactory", "Normalize", "ResNet", "RoCLHead", "RobustModel", "Routed", "WideResNet",
    "branch", "build_encoder", "build_exported", "build_model", "build_normalize",
    "convert_multibn", "export_classifier", "export_encoder", "export_meta",
    "load_exported", "load_state_dict_strict", "multi_bn", "multi_bn_layers", "plain_bn",
    "check_arch", "check_head", "register_arch", "register_head", "revert_multibn",
    "save_export", "set_branch", "single_bn_state_dict",
]
