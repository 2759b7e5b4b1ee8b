"""The sections every run config shares: ``data``, ``mask``, ``target`` / ``heads``, ``model``, ``optim``, ``train``
(the methods' own sections are in :mod:`maskvid.config.method_sections`).

Each field's docstring is its documentation: ``configs/README.md``'s key tables are generated from them
(:mod:`maskvid.config.docs`; a test fails when the two drift apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from maskvid.data.datasets import MOTION_SOURCES
from maskvid.errors import ConfigError
from maskvid.validation import at_least, check_fields, one_of, positive, within

CROPS = ("multiscale", "random_resized", "centre", "none")
SAMPLINGS = ("dense", "segments", "pair")  # of the dataset's samplings, those a training run takes


@dataclass
class DataConfig:
    train_list: str = ""
    """annotation list (`path` or `path label` lines; see README)"""
    val_list: str | None = None
    """evaluation list (fine-tuning evaluates on it at the end of training)"""
    root: str | None = None
    """prefix for relative paths (null: the list's folder)"""
    classes: str | None = None
    """class-names file when labels are names"""
    num_frames: int = 16
    """frames per clip"""
    stride: int = 4
    """frames between sampled frames (SSv2: 2)"""
    size: int = 224
    """crop side in pixels"""
    crop: str = "multiscale"
    """`multiscale`, `random_resized`, `centre`, `none`"""
    flip: bool = True
    """horizontal flip (turn off for direction-sensitive data)"""
    decode_size: int | None = None
    """short side to decode at (null: native)"""
    num_repeats: int = 1
    """repeated augmentation: clips per decoded video"""
    max_bad_fraction: float = 0.1
    """stop with DataError when a larger fraction of video reads fail"""
    sampling: str = "dense"
    """`dense` (num_frames × stride), `segments` (TSN), `pair` (two clips of one video: `video2`, `mask2`)"""
    pair_max_distance: int = 32
    """`pair` sampling: the two clips start at most this many frames apart (VIMPAC)"""
    motion_source: str = "codec"
    """where motion comes from when a mask or target needs it: `codec` vectors or `flow` (OpenCV DIS)"""
    flow_preset: str = "medium"
    """DIS preset for `motion_source: flow` (`ultrafast`, `fast`, `medium`)"""
    cache: str | None = None
    """a flow cache from `maskvid extract trajectories` for a trajectory target (null: flow computed online)"""
    tokens_cache: str | None = None
    """a token cache from `maskvid extract tokens`: batches carry `tokens`, each clip cropped as one cached view"""
    randaugment: tuple[int, int] | None = None
    """`[ops, magnitude]`, torchvision RandAugment, identical on every frame"""
    erase: float = 0.0
    """random-erasing probability (one box through all frames)"""
    test_views: tuple[int, int] = (1, 1)
    """evaluation: temporal clips × spatial crops per video, softmax averaged"""
    class_map: str | None = None
    """domain adaptation: `val_class model_class` per line"""
    val_classes: str | None = None
    """class names of the validation list if they differ from `data.classes`"""
    knn_train_list: str | None = None
    """the kNN monitor's labelled bank (`train.knn_every`; VIMPAC: UCF101 train)"""
    knn_val_list: str | None = None
    """its labelled queries"""

    def __post_init__(self):
        check_fields(self, "data")
        at_least("data", 1, num_frames=self.num_frames, stride=self.stride, size=self.size,
                 decode_size=self.decode_size, num_repeats=self.num_repeats)
        at_least("data", 0, pair_max_distance=self.pair_max_distance)
        for i, views in enumerate(self.test_views):
            within(f"data.test_views[{i}]", views, 1, 1000)
        one_of("data.crop", self.crop, CROPS)
        one_of("data.sampling", self.sampling, SAMPLINGS)
        one_of("data.motion_source", self.motion_source, MOTION_SOURCES)
        one_of("data.flow_preset", self.flow_preset, ("ultrafast", "fast", "medium"))
        within("data.max_bad_fraction", self.max_bad_fraction, 0, 1)
        within("data.erase", self.erase, 0, 1)
        if self.randaugment is not None:
            at_least("data.randaugment", 0, ops=self.randaugment[0])
            within("data.randaugment[1]", self.randaugment[1], 0, 30)  # torchvision's 31 magnitude bins


@dataclass
class MaskConfig:
    strategy: str = "tube"
    """any name of `maskvid.masking.available()` ([docs/masking.md](../docs/masking.md))"""
    ratio: float = 0.9
    """fraction of tokens hidden"""
    options: dict = field(default_factory=dict)
    """the strategy's other options, e.g. `{variant: dense}`"""

    def __post_init__(self):
        from maskvid import masking  # builds the strategy once to check name, ratio and options now

        check_fields(self, "mask")
        if "source" in self.options:
            raise ConfigError("mask.options.source", "the motion source is a data option: set data.motion_source")
        try:
            masking.build(self.strategy, ratio=self.ratio, **self.options)
        except ConfigError as e:
            raise within_section(e, "mask", ("strategy", "ratio")) from None
        except (TypeError, ValueError) as e:  # an option of the right name and the wrong kind
            raise ConfigError("mask.options", f"{self.strategy}: {e}") from None


@dataclass
class TargetConfig:
    """One head's target, the shorthand for ``heads: [{target: NAME, options: ...}]``."""

    name: str = "norm_pixels"
    """a name of `maskvid.targets.available()`: `pixels`, `norm_pixels`, `hog`, `rgb_diff`, `tokens`, MME's
    `trajectory`, `flow`, `hof`, `mbh`, `dense_hog` (null section: norm_pixels)"""
    options: dict = field(default_factory=dict)
    """the target's options, e.g. `{bins: 9}` for hog"""

    def __post_init__(self):
        check_fields(self, "target")


@dataclass
class PredictionHeadConfig:
    """One entry of ``heads``: a decoder predicting one target with one loss and weight."""

    target: str = "norm_pixels"
    """a name of `maskvid.targets.available()`"""
    options: dict = field(default_factory=dict)
    """the target's options"""
    weight: float = 1.0
    """the term's weight in the method's loss"""
    loss: str | None = None
    """`mse` or `cross_entropy` (null: by the target's kind)"""
    name: str | None = None
    """the term's log name (null: the target's name, numbered if repeated)"""
    decoder_width: int | None = None
    """null: `model.decoder_width`"""
    decoder_depth: int | None = None
    """null: `model.decoder_depth`"""
    decoder_heads: int | None = None
    """null: `model.decoder_heads`"""

    def __post_init__(self):
        check_fields(self, "heads[]")
        at_least("heads[]", 1, decoder_width=self.decoder_width, decoder_depth=self.decoder_depth,
                 decoder_heads=self.decoder_heads)
        at_least("heads[]", 0, weight=self.weight)
        if self.loss is not None:
            one_of("heads[].loss", self.loss, ("mse", "cross_entropy"))


@dataclass
class ModelConfig:
    preset: str = "base"
    """`micro` (96×2, 3 heads: the CPU twins), `tiny` (ViT-Ti, 192×12), `small`, `base`, `large`, `huge`"""
    attention: str = "joint"
    """`joint`, `divided` (TimeSformer), `t_hw` (VIMPAC: time, then rows and columns; post-LN) or `thw_split`"""
    pos_embed: str = "sincos"
    """`sincos` (VideoMAE's fixed table), `learned`, `separable` (space + time), `factorized` (t + h + w), `rope` (3D
    rotary: joint attention; not for MAM² or HF export)"""
    patch: tuple[int, int, int] = (2, 16, 16)
    """tubelet (t, p, p); the token stem: the tokenizer's downsampling"""
    stem: str = "tubelet"
    """`tubelet` (t×p×p Conv3d), `frame` (p×p Conv2d per frame; patch t = 1), `token` (ids of a vocabulary)"""
    vocab_size: int | None = None
    """the token stem's vocabulary (id vocab_size is [MASK])"""
    cls_token: bool = False
    """a learned [CLS] token before the patch tokens"""
    hide: str = "drop"
    """masked tokens are dropped (`drop`, MAE) or replaced by [MASK] (`replace`, BERT)"""
    drop_path: float = 0.0
    """stochastic depth rate of the last block"""
    layer_scale: float | None = None
    """LayerScale init (null: none)"""
    grad_checkpointing: bool = False
    """recompute the encoder's and decoders' blocks in backward to save memory"""
    decoder_width: int = 384
    """the prediction heads' decoder width (ViT-S: 192)"""
    decoder_depth: int = 4
    """decoder blocks"""
    decoder_heads: int = 6
    """decoder attention heads"""
    decoder_locality: float | None = None
    """decoder attention starts local: a learned bias −s·|Δ| per axis, s for head 0, halved per head; null: none"""
    overrides: dict = field(default_factory=dict)
    """any other `ViTConfig` field (`width`, `depth`, `heads`, `mlp_ratio`, `eps`, ...)"""

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
        positive("model", layer_scale=self.layer_scale, decoder_locality=self.decoder_locality)


@dataclass
class OptimConfig:
    """AdamW; ``lr`` None: ``base_lr · effective batch / 256`` (the linear scaling rule of MAE/VideoMAE)."""

    lr: float | None = None
    """absolute lr; null: `base_lr · effective batch / 256`"""
    base_lr: float = 1.5e-4
    """the linear scaling rule's base"""
    min_lr: float = 1e-5
    """the cosine schedule's floor"""
    weight_decay: float = 0.05
    """AdamW; no decay on norms, biases, position tables, [MASK] and [CLS]"""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas"""
    warmup_epochs: float = 40
    """linear warmup from 0"""
    warmup_steps: int | None = None
    """overrides warmup_epochs"""
    clip_grad: float | None = None
    """max gradient norm"""
    accumulate: int = 1
    """micro-batches per optimizer step"""
    layer_decay: float = 1.0
    """BEiT/VideoMAE layer-wise lr decay (fine-tuning: 0.75); 1.0 = off"""

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
    """the cosine schedule's length"""
    max_steps: int | None = None
    """stop after this many optimizer steps (the schedule still spans `epochs` unless `schedule_steps`)"""
    schedule_steps: int | None = None
    """schedule length in steps (overrides epochs)"""
    batch_size: int = 32
    """clips per rank per micro-batch"""
    num_workers: int = 8
    """data-loader workers per rank"""
    checkpoint_every: int = 1000
    """optimizer steps between checkpoints"""
    keep_checkpoints: int = 2
    """how many checkpoints to keep"""
    log_every: int = 10
    """steps between `metrics.jsonl` / TensorBoard records"""
    precision: str = "auto"
    """`auto` (bf16 autocast on CUDA, fp32 on CPU), `fp32`, `bf16`"""
    compile: bool = False
    """`torch.compile` the method (CPU: ~50 s compile for the micro model)"""
    copy_stream: bool = True
    """CUDA: copy each batch to the GPU on a side stream, overlapping the step before it (no effect elsewhere)"""
    device: str = "auto"
    """`auto`, `cpu`, `cuda`, `cuda:1`"""
    progress: bool = True
    """a tqdm bar on a terminal"""
    ema: float | None = None
    """model EMA decay (e.g. 0.9999); evaluation then uses the EMA weights"""
    knn_every: int | None = None
    """pretraining: the encoder's kNN accuracy every this many steps (bank `data.knn_train_list`, queries
    `data.knn_val_list`)"""
    knn_k: int = 200
    """neighbours that vote (VIMPAC's monitor: 200, weights exp(cos / 0.07))"""

    def __post_init__(self):
        check_fields(self, "train")
        at_least("train", 1, epochs=self.epochs, max_steps=self.max_steps, schedule_steps=self.schedule_steps,
                 batch_size=self.batch_size, checkpoint_every=self.checkpoint_every,
                 keep_checkpoints=self.keep_checkpoints, log_every=self.log_every)
        at_least("train", 0, num_workers=self.num_workers)
        at_least("train", 1, knn_every=self.knn_every, knn_k=self.knn_k)
        one_of("train.precision", self.precision, ("auto", "fp32", "bf16"))
        within("train.ema", self.ema, 0, 1, open_low=True, open_high=True)
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError("train.device", f"{self.device!r} is not a device (auto, cpu, cuda, cuda:1, "
                                  "...)") from None


def within_section(error: ConfigError, section: str, own_keys: tuple[str, ...]) -> ConfigError:
    """A registry names an option ``mask.variant``; in a config file it lives at ``mask.options.variant``."""
    name = error.key.split(".", 1)[-1]
    key = f"{section}.{name}" if name in own_keys else f"{section}.options.{name}"
    return ConfigError(key, error.problem)
