"""Typed run configuration: dataclasses validated on creation, loaded from YAML, overridden with ``--set k=v``.

    config = load_config("configs/pretrain/videomae_tiny.yaml", ["optim.lr=1e-3", "train.max_steps=50"])

Every key is documented in ``configs/README.md``; an unknown key or a bad value raises ConfigError naming the dotted
key before any data is read.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field

import yaml

from maskvid.errors import ConfigError


@dataclass
class DataConfig:
    train_list: str = ""
    val_list: str | None = None
    root: str | None = None
    classes: str | None = None
    num_frames: int = 16
    stride: int = 4
    size: int = 224
    crop: str = "multiscale"
    flip: bool = True
    decode_size: int | None = None
    num_repeats: int = 1
    max_bad_fraction: float = 0.1
    randaugment: tuple[int, int] | None = None  # (ops, magnitude), torchvision's RandAugment, same on every frame
    erase: float = 0.0  # random-erasing probability
    test_views: tuple[int, int] = (1, 1)  # evaluation: temporal clips x spatial crops, softmax averaged per video
    class_map: str | None = None  # domain adaptation: evaluate on the val list's classes mapped onto the model's
    val_classes: str | None = None  # class names of the validation list when they differ from ``classes``

    def __post_init__(self):
        _positive("data", num_frames=self.num_frames, stride=self.stride, size=self.size,
                  num_repeats=self.num_repeats)
        self.test_views = tuple(self.test_views)
        if self.randaugment is not None:
            self.randaugment = tuple(self.randaugment)
        if not 0 <= self.erase <= 1:
            raise ConfigError("data.erase", f"probability must be in [0, 1], got {self.erase}")


@dataclass
class MaskConfig:
    strategy: str = "tube"
    ratio: float = 0.9
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        from maskvid import masking  # validates name, ratio and options now, before any data is read

        self.generator = masking.build(self.strategy, ratio=self.ratio, **self.options)


@dataclass
class TargetConfig:
    name: str = "norm_pixels"
    options: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    preset: str = "base"
    attention: str = "joint"
    pos_embed: str = "sincos"
    patch: tuple[int, int, int] = (2, 16, 16)
    drop_path: float = 0.0
    layer_scale: float | None = None
    grad_checkpointing: bool = False
    decoder_width: int = 384
    decoder_depth: int = 4
    decoder_heads: int = 6
    overrides: dict = field(default_factory=dict)  # any other ViTConfig field (width, depth, heads, ...)

    def __post_init__(self):
        self.patch = tuple(self.patch)


@dataclass
class OptimConfig:
    """AdamW; ``lr`` None: ``base_lr · effective batch / 256`` (the linear scaling rule of MAE/VideoMAE)."""

    lr: float | None = None
    base_lr: float = 1.5e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 40
    warmup_steps: int | None = None  # overrides warmup_epochs
    clip_grad: float | None = None
    accumulate: int = 1
    layer_decay: float = 1.0  # BEiT/VideoMAE layer-wise lr decay (fine-tuning: 0.75); 1.0 = off

    def __post_init__(self):
        self.betas = tuple(self.betas)
        _positive("optim", base_lr=self.base_lr, accumulate=self.accumulate)
        if self.lr is not None and self.lr <= 0:
            raise ConfigError("optim.lr", f"must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError("optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        if not 0 < self.layer_decay <= 1:
            raise ConfigError("optim.layer_decay", f"must be in (0, 1], got {self.layer_decay}")


@dataclass
class TrainConfig:
    epochs: int = 800
    max_steps: int | None = None  # stops early (the schedule still spans ``epochs`` unless ``schedule_steps``)
    schedule_steps: int | None = None
    batch_size: int = 32
    num_workers: int = 8
    checkpoint_every: int = 1000  # optimizer steps
    keep_checkpoints: int = 2
    log_every: int = 10
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16
    compile: bool = False
    device: str = "auto"
    progress: bool = True
    ema: float | None = None  # model EMA decay (e.g. 0.9999); evaluation then uses the EMA weights

    def __post_init__(self):
        _positive("train", epochs=self.epochs, batch_size=self.batch_size, checkpoint_every=self.checkpoint_every,
                  log_every=self.log_every, keep_checkpoints=self.keep_checkpoints)
        if self.num_workers < 0:
            raise ConfigError("train.num_workers", f"must be >= 0, got {self.num_workers}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError("train.precision", f"{self.precision!r} not in auto, fp32, bf16")
        for key in ("max_steps", "schedule_steps"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"train.{key}", f"must be >= 1 or null, got {value}")


@dataclass
class PretrainConfig:
    output_dir: str = "runs/pretrain"
    seed: int = 0
    method: str = "mae"
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass
class HeadConfig:
    """Fine-tuning heads. ``kind``: ``linear`` (mean-pool + fc_norm + linear, VideoMAE), ``bridging`` (MAR:
    transformer blocks over the visible tokens, no position embedding, then mean-pool + linear), ``probe``
    (frozen encoder, BatchNorm without affine + linear, MAE's linear probe)."""

    kind: str = "linear"
    num_classes: int | None = None  # None: from the class-names file or the largest label + 1
    fc_norm: bool = True
    dropout: float = 0.0
    init_scale: float = 0.001
    bridge_width: int = 512
    bridge_depth: int = 2
    bridge_heads: int = 8
    recon_weight: float = 0.1  # MAR's λ for the reconstruction branch (0: no branch)

    def __post_init__(self):
        if self.kind not in ("linear", "bridging", "probe"):
            raise ConfigError("head.kind", f"{self.kind!r} not in linear, bridging, probe")
        if self.recon_weight < 0:
            raise ConfigError("head.recon_weight", f"must be >= 0, got {self.recon_weight}")


@dataclass
class MixupConfig:
    """timm's Mixup/CutMix with label smoothing; ``mixup: 0`` and ``cutmix: 0`` turn mixing off."""

    mixup: float = 0.8
    cutmix: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1


@dataclass
class FinetuneConfig:
    """Full fine-tuning, linear probing and MAR masked fine-tuning (``mask`` set, ``head.kind: bridging``)."""

    output_dir: str = "runs/finetune"
    seed: int = 0
    init: str | None = None  # maskvid run dir / checkpoint / model.safetensors, HF VideoMAE dir or original .pth
    data: DataConfig = field(default_factory=lambda: DataConfig(crop="random_resized", test_views=(2, 3)))
    mask: MaskConfig | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(base_lr=1e-3, betas=(0.9, 0.999),
                                                                   warmup_epochs=5, layer_decay=0.75))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=75))

    def to_dict(self) -> dict:
        return _plain(self)


def _positive(section: str, **values) -> None:
    for key, value in values.items():
        if value is None or value <= 0:
            raise ConfigError(f"{section}.{key}", f"must be positive, got {value}")


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _section_type(hint):
    """The dataclass a field holds (``DataConfig``, ``MaskConfig | None`` → MaskConfig), or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return inner[0] if inner else None


def _coerce(hint, value, key: str):
    """YAML reads ``1e-3`` as a string (YAML 1.1 wants ``1.0e-3``); a float field takes it as the number it is."""
    wants_float = hint is float or float in typing.get_args(hint)
    if isinstance(value, str) and wants_float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    return value


def from_dict(cls, values: dict, prefix: str = "", base=None):
    """Build dataclass ``cls`` from nested dicts, on top of ``base`` (or the field defaults, which for a section
    may differ from its class defaults); unknown keys raise ConfigError with the dotted key."""
    if not isinstance(values, dict):
        raise ConfigError(prefix.rstrip(".") or "config", f"expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(prefix + unknown[0], f"unknown key; known here: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        section = _section_type(hints[name])
        if section is None or value is None:
            kwargs[name] = _coerce(hints[name], value, prefix + name)
            continue
        if not isinstance(value, dict):
            raise ConfigError(prefix + name, f"expected a section, got {value!r}")
        field_ = known[name]
        default = field_.default_factory() if field_.default_factory is not dataclasses.MISSING else None
        kwargs[name] = from_dict(section, value, f"{prefix}{name}.", base=default)
    if base is not None:
        kwargs = {**{f.name: getattr(base, f.name) for f in dataclasses.fields(cls) if f.init}, **kwargs}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(prefix.rstrip(".") or "config", str(e)) from e


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """``["optim.lr=1e-3", "mask.options.variant=sparse"]`` → nested dict updates (values parsed as YAML)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "an override is section.key=value")
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, f"{part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return values


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None, kind=None):
    """A :class:`PretrainConfig` (default) or ``kind`` (e.g. :class:`FinetuneConfig`) from YAML + overrides."""
    values = {}
    if path is not None:
        try:
            with open(path) as f:
                values = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError("--config", f"{path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError("--config", f"{path}: not valid YAML ({e})") from e
    return from_dict(kind or PretrainConfig, apply_overrides(values, overrides or []))


def save_config(config: PretrainConfig, path: str) -> None:
    """Write atomically: a run killed mid-write keeps its previous config.yaml."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    os.replace(tmp, path)
