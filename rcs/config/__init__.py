"""Typed configs, YAML loading, dotted overrides and validation."""

from rcs.config.loader import (
    apply_overrides,
    describe_config,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from rcs.config.schema import (
    AttackConfig,
    AugmentConfig,
    DataConfig,
    EvalConfig,
    FinetuneConfig,
    LogConfig,
    ModelConfig,
    RunConfig,
    SelectionConfig,
    SlurmConfig,
    TrainConfig,
)

__all__ = [
    "AttackConfig", "AugmentConfig", "DataConfig", "EvalConfig", "FinetuneConfig", "LogConfig",
    "ModelConfig", "RunConfig", "SelectionConfig", "SlurmConfig", "TrainConfig", "apply_overrides",
    "describe_config", "from_dict", "load_config", "save_config", "to_dict",
]
