"""Frozen run configuration, loaded once from YAML at the edge and passed explicitly.

Ray workers and ZenML steps receive ``cfg.model_dump(mode="json")`` and validate it again, so a config
crosses process boundaries as plain data, never as a pickled object. Every config loads with
``load_config(Kind, path, **overrides)``.
"""

from tagops.config.base import FrozenModel, load_config, load_yaml
from tagops.config.loop import (
    DRIFT_TESTS,
    DriftTestName,
    MonitorConfig,
    ReferenceConfig,
    RetrainConfig,
    RetrainPolicy,
    RolloutConfig,
    RolloutPolicy,
    ScheduleConfig,
    SimulateConfig,
    parse_period,
)
from tagops.config.models import (
    AnyModelParams,
    CleaningConfig,
    EnsembleParams,
    LinearParams,
    MemberParams,
    ModelParams,
    RulesParams,
    TransformerParams,
)
from tagops.config.serving import AutoscalingParams, ServeConfig
from tagops.config.training import (
    AugmentConfig,
    CalibrationConfig,
    DataConfig,
    EvalConfig,
    FloatRange,
    GateConfig,
    IntRange,
    LinearSearchSpace,
    PipelineConfig,
    TrainConfig,
    TransformerSearchSpace,
    TuneConfig,
)

__all__ = [
    "DRIFT_TESTS",
    "AnyModelParams",
    "AugmentConfig",
    "AutoscalingParams",
    "CalibrationConfig",
    "CleaningConfig",
    "DataConfig",
    "DriftTestName",
    "EnsembleParams",
    "EvalConfig",
    "FloatRange",
    "FrozenModel",
    "GateConfig",
    "IntRange",
    "LinearParams",
    "LinearSearchSpace",
    "MemberParams",
    "ModelParams",
    "MonitorConfig",
    "PipelineConfig",
    "ReferenceConfig",
    "RetrainConfig",
    "RetrainPolicy",
    "RolloutConfig",
    "RolloutPolicy",
    "RulesParams",
    "ScheduleConfig",
    "ServeConfig",
    "SimulateConfig",
    "TrainConfig",
    "TransformerParams",
    "TransformerSearchSpace",
    "TuneConfig",
    "load_config",
    "load_yaml",
    "parse_period",
]
