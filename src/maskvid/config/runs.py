"""The two run configs — pretraining and fine-tuning — and the fine-tuning-only sections."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from maskvid.config.method_sections import Mam2Config, TokenizerConfig, VimpacConfig
from maskvid.config.sections import (
    DataConfig,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    PredictionHeadConfig,
    TargetConfig,
    TrainConfig,
    within_section,
)
from maskvid.errors import ConfigError
from maskvid.models.vit import ViTConfig
from maskvid.validation import at_least, check_fields, one_of, positive, typed, within


@dataclass
class PretrainConfig:
    output_dir: str = "runs/pretrain"
    """the run directory"""
    seed: int = 0
    """seeds initialization, data order, clips, crops and masks"""
    method: str = "mae"
    """a name of `maskvid.recipes.METHODS`"""
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig | None = field(default_factory=MaskConfig)
    """the mask strategy (null only for `method: vqvae`, which masks nothing)"""
    target: TargetConfig | None = None
    """one head's target (the shorthand for a one-entry `heads`); null with no `heads`: norm_pixels"""
    heads: tuple[PredictionHeadConfig, ...] = ()
    """prediction heads, each `{target, options, weight, loss, name, decoder_width/depth/heads}`"""
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """the trainable VQ-VAE (`method: vqvae`)"""
    mam2: Mam2Config = field(default_factory=Mam2Config)
    """MAM²'s regressor and switches (`method: mam2`)"""
    vimpac: VimpacConfig = field(default_factory=VimpacConfig)
    """VIMPAC's contrastive term, noise and tokens (`method: vimpac`)"""
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check_fields(self, "")
        within("seed", self.seed, 0, 2**63 - 1)
        if self.heads and self.target is not None:
            raise ConfigError("target", "give either target (one head) or heads, not both")
        if self.train.knn_every and not (self.data.knn_train_list and self.data.knn_val_list):
            raise ConfigError("train.knn_every", "the kNN monitor needs a labelled bank and query list: set "
                              "data.knn_train_list and data.knn_val_list")
        if self.method == "mam2" and self.model.decoder_locality:
            raise ConfigError("model.decoder_locality", "MAM²'s decoders are its own (mam2.width, heads): they take "
                              "no locality bias")
        encoder = encoder_config(self)  # cross-section: the tubelet divides the clip, heads divide the width
        from maskvid import targets

        for i, head in enumerate(self.head_configs()):
            key = "target" if not self.heads else f"heads[{i}]"
            try:
                targets.TARGETS.get_entry(head.target)
                targets.build(head.target, **target_geometry(head.target, encoder, self.data.stride), **head.options)
            except ConfigError as e:
                if key != "target" and e.key == "target.name":  # in a heads entry the name is "target"
                    raise ConfigError(f"{key}.target", e.problem) from None
                raise within_section(e, key, ("name",) if key == "target" else ()) from None
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{key}.options", f"{head.target}: {e}") from None

    def head_configs(self) -> list[PredictionHeadConfig]:
        """The heads this run trains: ``heads``, else one head from ``target`` (norm pixels by default)."""
        if self.heads:
            return list(self.heads)
        target = self.target or TargetConfig()
        return [PredictionHeadConfig(target=target.name, options=dict(target.options))]

    def to_dict(self) -> dict:
        from maskvid.config.files import plain

        return plain(self)


def target_geometry(name: str, encoder: ViTConfig, stride: int | None = None) -> dict:
    """The clip geometry a target takes from the encoder (patch, channels) and the data (the input ``stride``),
    for the options it has."""
    from maskvid import targets
    from maskvid.registry import option_names

    wanted = option_names(targets.TARGETS.get_entry(name))
    geometry = {"patch": encoder.patch, "channels": encoder.channels}
    if stride is not None:
        geometry["stride"] = stride
    return {k: v for k, v in geometry.items() if k in wanted}


@dataclass
class HeadConfig:
    """Fine-tuning heads. ``kind``: ``linear`` (mean-pool + fc_norm + linear, VideoMAE), ``bridging`` (MAR:
    transformer blocks over the visible tokens, no position embedding, then mean-pool + linear), ``probe``
    (frozen encoder, BatchNorm without affine + linear, MAE's linear probe)."""

    kind: str = "linear"
    """`linear` (fc_norm + linear), `bridging` (MAR), `probe` (frozen encoder, BN + linear)"""
    num_classes: int | None = None
    """null: the class-names file's length, else the largest label + 1"""
    fc_norm: bool = True
    """VideoMAE's norm of the pooled tokens"""
    dropout: float = 0.0
    """dropout before the last linear layer"""
    init_scale: float = 0.001
    """the fresh classifier's weights are scaled by this (VideoMAE 0.001; VIMPAC 0: zero-initialized)"""
    pool: str = "mean"
    """what the linear head reads: `mean` of the tokens (VideoMAE) or the `cls` token's output (VIMPAC)"""
    bridge_width: int = 512
    """MAR's bridging classifier width"""
    bridge_depth: int = 2
    """its blocks"""
    bridge_heads: int = 8
    """its attention heads"""
    recon_weight: float = 0.1
    """MAR's reconstruction weight λ (0: no branch)"""

    def __post_init__(self):
        check_fields(self, "head")
        one_of("head.kind", self.kind, ("linear", "bridging", "probe"))
        at_least("head", 1, num_classes=self.num_classes, bridge_width=self.bridge_width,
                 bridge_depth=self.bridge_depth, bridge_heads=self.bridge_heads)
        if self.bridge_width % self.bridge_heads:
            raise ConfigError("head.bridge_heads", f"width {self.bridge_width} is not divisible by "
                              f"{self.bridge_heads} heads")
        within("head.dropout", self.dropout, 0, 1, open_high=True)
        at_least("head", 0, init_scale=self.init_scale)
        one_of("head.pool", self.pool, ("mean", "cls"))
        at_least("head", 0, recon_weight=self.recon_weight)


@dataclass
class MixupConfig:
    """timm's Mixup/CutMix with label smoothing; ``mixup: 0`` and ``cutmix: 0`` turn mixing off."""

    mixup: float = 0.8
    """timm Mixup alpha (0: off)"""
    cutmix: float = 1.0
    """timm CutMix alpha (0: off)"""
    prob: float = 1.0
    """how often a batch is mixed"""
    switch_prob: float = 0.5
    """CutMix instead of Mixup"""
    label_smoothing: float = 0.1
    """also used without mixup"""

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
    """the run directory"""
    seed: int = 0
    """seeds initialization, data order, clips, crops, masks and mixup"""
    init: str | None = None
    """pretrained weights: a maskvid run dir, checkpoint dir or `model.safetensors`, an HF VideoMAE dir, an original
    `.pth`; null = from scratch"""
    data: DataConfig = field(default_factory=lambda: DataConfig(crop="random_resized", test_views=(2, 3)))
    mask: MaskConfig | None = None
    """set it (e.g. `{strategy: running_cell, ratio: 0.5}`) for MAR"""
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    tokenizer: str | None = None
    """a token-stem encoder's tokenizer file (VIMPAC): clips become ids on the device, in training and evaluation"""
    mixup: MixupConfig = field(default_factory=MixupConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(base_lr=1e-3, betas=(0.9, 0.999),
                                                                   warmup_epochs=5, layer_decay=0.75))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=75))

    def __post_init__(self):
        check_fields(self, "")
        within("seed", self.seed, 0, 2**63 - 1)
        if self.data.sampling == "pair":
            raise ConfigError("data.sampling", "fine-tuning takes one clip per sample: dense or segments")
        encoder = encoder_config(self)
        if (encoder.stem == "token") != (self.tokenizer is not None):
            raise ConfigError("tokenizer", "a token-stem encoder reads ids: give the tokenizer that makes them from "
                              "the clips" if encoder.stem == "token" else "only a token-stem encoder reads ids")
        if self.head.pool == "cls" and not encoder.cls_token:
            raise ConfigError("head.pool", "the encoder has no [CLS] token: set model.cls_token: true")

    def to_dict(self) -> dict:
        from maskvid.config.files import plain

        return plain(self)


def encoder_config(config: PretrainConfig | FinetuneConfig) -> ViTConfig:
    """The encoder a config describes (``model`` + the clip shape of ``data``); every override checked by key."""
    m = config.model
    hints = typing.get_type_hints(ViTConfig)
    explicit = {"attention", "pos_embed", "patch", "drop_path", "layer_scale", "grad_checkpointing", "num_frames",
                "size", "stem", "vocab_size", "cls_token", "hide"}
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
        size=config.data.size, stem=m.stem, vocab_size=m.vocab_size, cls_token=m.cls_token, hide=m.hide,
        **overrides,
    )
