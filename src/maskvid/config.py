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

import torch
import yaml

from maskvid.errors import ConfigError
from maskvid.models.vit import ViTConfig
from maskvid.validation import at_least, check_fields, one_of, positive, typed, within

CROPS = ("multiscale", "random_resized", "centre", "none")


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
        check_fields(self, "data")
        at_least("data", 1, num_frames=self.num_frames, stride=self.stride, size=self.size,
                 decode_size=self.decode_size, num_repeats=self.num_repeats)
        for i, views in enumerate(self.test_views):
            within(f"data.test_views[{i}]", views, 1, 1000)
        one_of("data.crop", self.crop, CROPS)
        within("data.max_bad_fraction", self.max_bad_fraction, 0, 1)
        within("data.erase", self.erase, 0, 1)
        if self.randaugment is not None:
            at_least("data.randaugment", 0, ops=self.randaugment[0])
            within("data.randaugment[1]", self.randaugment[1], 0, 30)  # torchvision's 31 magnitude bins


@dataclass
class MaskConfig:
    strategy: str = "tube"
    ratio: float = 0.9
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        from maskvid import masking  # validates name, ratio and options now, before any data is read

        check_fields(self, "mask")
        try:
            self.generator = masking.build(self.strategy, ratio=self.ratio, **self.options)
        except ConfigError as e:
            raise _within_section(e, "mask", ("strategy", "ratio")) from None
        except (TypeError, ValueError) as e:  # an option of the right name and the wrong kind
            raise ConfigError("mask.options", f"{self.strategy}: {e}") from None


@dataclass
class TargetConfig:
    name: str = "norm_pixels"
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        check_fields(self, "target")


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
        check_fields(self, "model")
        for i, side in enumerate(self.patch):
            within(f"model.patch[{i}]", side, 1, 1024)
        at_least("model", 1, decoder_width=self.decoder_width, decoder_depth=self.decoder_depth,
                 decoder_heads=self.decoder_heads)
        if self.decoder_width % self.decoder_heads:
            raise ConfigError("model.decoder_heads", f"decoder width {self.decoder_width} is not divisible by "
                              f"{self.decoder_heads} heads")
        within("model.drop_path", self.drop_path, 0, 1, open_high=True)
        positive("model", layer_scale=self.layer_scale)


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
        check_fields(self, "optim")
        positive("optim", lr=self.lr, base_lr=self.base_lr, clip_grad=self.clip_grad)
        at_least("optim", 0, min_lr=self.min_lr, weight_decay=self.weight_decay, warmup_epochs=self.warmup_epochs,
                 warmup_steps=self.warmup_steps)
        at_least("optim", 1, accumulate=self.accumulate)
        for i, beta in enumerate(self.betas):
            within(f"optim.betas[{i}]", beta, 0, 1, open_high=True)
        within("optim.layer_decay", self.layer_decay, 0, 1, open_low=True)


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
        check_fields(self, "train")
        at_least("train", 1, epochs=self.epochs, max_steps=self.max_steps, schedule_steps=self.schedule_steps,
                 batch_size=self.batch_size, checkpoint_every=self.checkpoint_every,
                 keep_checkpoints=self.keep_checkpoints, log_every=self.log_every)
        at_least("train", 0, num_workers=self.num_workers)
        one_of("train.precision", self.precision, ("auto", "fp32", "bf16"))
        within("train.ema", self.ema, 0, 1, open_low=True, open_high=True)
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError("train.device", f"{self.device!r} is not a device (auto, cpu, cuda, cuda:1, "
                                  "...)") from None


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

    def __post_init__(self):
        check_fields(self, "")
        within("seed", self.seed, 0, 2**63 - 1)
        encoder = encoder_config(self)  # cross-section: the tubelet divides the clip, heads divide the width
        from maskvid import targets

        try:
            targets.build(self.target.name, patch=encoder.patch, channels=encoder.channels, **self.target.options)
        except ConfigError as e:
            raise _within_section(e, "target", ("name",)) from None
        except (TypeError, ValueError) as e:
            raise ConfigError("target.options", f"{self.target.name}: {e}") from None

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
        check_fields(self, "head")
        one_of("head.kind", self.kind, ("linear", "bridging", "probe"))
        at_least("head", 1, num_classes=self.num_classes, bridge_width=self.bridge_width,
                 bridge_depth=self.bridge_depth, bridge_heads=self.bridge_heads)
        if self.bridge_width % self.bridge_heads:
            raise ConfigError("head.bridge_heads", f"width {self.bridge_width} is not divisible by "
                              f"{self.bridge_heads} heads")
        within("head.dropout", self.dropout, 0, 1, open_high=True)
        positive("head", init_scale=self.init_scale)
        at_least("head", 0, recon_weight=self.recon_weight)


@dataclass
class MixupConfig:
    """timm's Mixup/CutMix with label smoothing; ``mixup: 0`` and ``cutmix: 0`` turn mixing off."""

    mixup: float = 0.8
    cutmix: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1

    def __post_init__(self):
        check_fields(self, "mixup")
        at_least("mixup", 0, mixup=self.mixup, cutmix=self.cutmix)
        within("mixup.prob", self.prob, 0, 1)
        within("mixup.switch_prob", self.switch_prob, 0, 1)
        within("mixup.label_smoothing", self.label_smoothing, 0, 1, open_high=True)


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

    def __post_init__(self):
        check_fields(self, "")
        within("seed", self.seed, 0, 2**63 - 1)
        encoder_config(self)

    def to_dict(self) -> dict:
        return _plain(self)


def encoder_config(config: PretrainConfig | FinetuneConfig) -> ViTConfig:
    """The encoder a config describes (``model`` + the clip shape of ``data``); every override checked by key."""
    m = config.model
    hints = typing.get_type_hints(ViTConfig)
    explicit = {"attention", "pos_embed", "patch", "drop_path", "layer_scale", "grad_checkpointing", "num_frames",
                "size"}
    overrides = {}
    for key, value in m.overrides.items():
        name = f"model.overrides.{key}"
        if key not in hints:
            raise ConfigError(name, f"not a model option; known: {', '.join(sorted(hints))}")
        if key in explicit:
            raise ConfigError(name, f"set it as model.{key} (or data.{key} for the clip shape)")
        overrides[key] = typed(hints[key], value, name)
    at_least("model.overrides", 1, **{k: v for k, v in overrides.items() if k in ("width", "depth", "heads",
                                                                                 "channels")})
    positive("model.overrides", **{k: v for k, v in overrides.items() if k in ("mlp_ratio", "eps")})
    for key in ("drop", "attn_drop"):
        within(f"model.overrides.{key}", overrides.get(key), 0, 1, open_high=True)
    return ViTConfig.preset(
        m.preset, attention=m.attention, pos_embed=m.pos_embed, patch=m.patch, drop_path=m.drop_path,
        layer_scale=m.layer_scale, grad_checkpointing=m.grad_checkpointing, num_frames=config.data.num_frames,
        size=config.data.size, **overrides,
    )


def _within_section(error: ConfigError, section: str, own_keys: tuple[str, ...]) -> ConfigError:
    """A registry names an option ``mask.variant``; in a config file it lives at ``mask.options.variant``."""
    name = error.key.split(".", 1)[-1]
    key = f"{section}.{name}" if name in own_keys else f"{section}.options.{name}"
    return ConfigError(key, error.problem)


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
            kwargs[name] = value  # the dataclass checks it against its annotation, naming the key
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
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            problem = str(getattr(e, "problem", None) or e).strip()
            raise ConfigError(key, f"the value {text!r} is not valid YAML ({problem})") from None
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
