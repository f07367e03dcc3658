"""Plain PyTorch: the mimicry benchmark, VGG16, the GAIN and baseline steps, one training loop.

Never imports Ray or `study/`.
"""
from .config import ARMS, PRESETS, ConfigError, DataConfig, GainConfig, ModelConfig, RunConfig, TrainConfig, preset

__all__ = [
    "ARMS", "PRESETS", "ConfigError", "DataConfig", "GainConfig", "ModelConfig", "RunConfig", "TrainConfig", "preset",
]
