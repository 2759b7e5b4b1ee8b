"""Typed run configuration: dataclasses validated on creation, loaded from YAML, overridden with ``--set k=v``.

    config = load_config("configs/pretrain/videomae_micro.yaml", ["optim.lr=1e-3", "train.max_steps=50"])

Every key is documented in ``configs/README.md`` (generated from the fields' docstrings by
:mod:`maskvid.config.docs`); an unknown key or a bad value raises ConfigError naming the dotted key before any data
is read. Configs hold values only; :mod:`maskvid.recipes` builds the objects they describe.
"""

from maskvid.config.files import apply_overrides, from_dict, load_config, plain, save_config
from maskvid.config.method_sections import Mam2Config, TokenizerConfig, VimpacConfig
from maskvid.config.runs import (
    FinetuneConfig,
    HeadConfig,
    MixupConfig,
    PretrainConfig,
    encoder_config,
    target_geometry,
)
from maskvid.config.sections import (
    CROPS,
    MOTION_SOURCES,
    SAMPLINGS,
    DataConfig,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    PredictionHeadConfig,
    TargetConfig,
    TrainConfig,
)

__all__ = [
    "CROPS", "MOTION_SOURCES", "SAMPLINGS", "DataConfig", "Mam2Config", "FinetuneConfig", "HeadConfig", "MaskConfig",
    "MixupConfig", "ModelConfig", "OptimConfig", "PredictionHeadConfig", "PretrainConfig", "TargetConfig",
    "TokenizerConfig", "TrainConfig", "VimpacConfig", "apply_overrides", "encoder_config", "from_dict", "load_config",
    "plain", "save_config", "target_geometry",
]
