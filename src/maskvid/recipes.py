"""Config → the objects a run needs: the one place that knows every method (DESIGN.md).

Every ``build_*`` validates what it can before any video is read.
"""

from __future__ import annotations

import dataclasses
import json
import os

from maskvid import masking, targets
from maskvid.config import FinetuneConfig, PretrainConfig, encoder_config
from maskvid.data import ClipTransform, VideoDataset, read_class_names
from maskvid.data.annotations import read_lines
from maskvid.engine.distributed import pick_device
from maskvid.errors import ConfigError
from maskvid.methods.finetune import Classification, LinearProbe, build_mixup
from maskvid.methods.mae import MAE
from maskvid.methods.mar import MARNet
from maskvid.models import DecoderConfig, VideoClassifier, VideoViT
from maskvid.pretrained import load_pretrained

METHODS = ("mae",)


def build_method(config: PretrainConfig) -> MAE:
    if config.method not in METHODS:
        raise ConfigError("method", f"{config.method!r} not in {METHODS}")
    encoder = encoder_config(config)
    m = config.model
    decoder = DecoderConfig(width=m.decoder_width, depth=m.decoder_depth, heads=m.decoder_heads, eps=encoder.eps,
                            head_eps=encoder.eps)
    if decoder.width % decoder.heads:
        raise ConfigError("model.decoder_heads", f"decoder width {decoder.width} not divisible by {decoder.heads}")
    target = targets.build(config.target.name, patch=encoder.patch, channels=encoder.channels,
                           **config.target.options)
    return MAE(encoder, decoder, target)


def build_pretrain_dataset(config: PretrainConfig) -> VideoDataset:
    d = config.data
    if not d.train_list:
        raise ConfigError("data.train_list", "no training list given")
    if not os.path.exists(d.train_list):
        raise ConfigError("data.train_list", f"{d.train_list}: no such file")
    transform = ClipTransform(size=d.size, crop=d.crop, flip=d.flip)
    return VideoDataset.from_list(
        d.train_list, root=d.root, classes=d.classes, require_labels=False, transform=transform,
        num_frames=d.num_frames, stride=d.stride, decode_size=d.decode_size, num_repeats=d.num_repeats,
        seed=config.seed, mask=config.mask.generator, patch=config.model.patch,
    )


def pretrain(config: PretrainConfig, resume: bool = False):
    """Build the method and the data from ``config`` and train; the run directory is ``config.output_dir``."""
    import torch

    from maskvid.engine.train import train

    pick_device(config.train.device)  # a device this machine lacks is a config error, before data is read
    torch.manual_seed(config.seed)  # the model's initialization
    method = build_method(config)
    dataset = build_pretrain_dataset(config)
    os.makedirs(config.output_dir, exist_ok=True)
    return train(method, dataset, config, config.output_dir, resume=resume)


# ---- fine-tuning, linear probing, MAR ------------------------------------------------------------------------


def finetune_transform(config: FinetuneConfig) -> ClipTransform:
    d = config.data
    return ClipTransform(size=d.size, crop=d.crop, flip=d.flip, randaugment=d.randaugment, erase=d.erase)


def build_finetune_datasets(config: FinetuneConfig) -> tuple[VideoDataset, VideoDataset | None]:
    """The training set (augmented, with MAR's mask when set) and the multi-view evaluation set."""
    d = config.data
    for key, path in (("data.train_list", d.train_list), ("data.val_list", d.val_list)):
        if key == "data.train_list" and not path:
            raise ConfigError(key, "no training list given")
        if path and not os.path.exists(path):
            raise ConfigError(key, f"{path}: no such file")
    mask = config.mask.generator if config.mask is not None else None
    train = VideoDataset.from_list(
        d.train_list, root=d.root, classes=d.classes, transform=finetune_transform(config), num_frames=d.num_frames,
        stride=d.stride, decode_size=d.decode_size, num_repeats=d.num_repeats, seed=config.seed, mask=mask,
        patch=config.model.patch)
    return train, build_eval_dataset(config)


def build_eval_dataset(config: FinetuneConfig) -> VideoDataset | None:
    d = config.data
    if not d.val_list:
        return None
    mask = None
    if config.mask is not None:  # inference masks are deterministic: a fixed start state where the strategy has one
        options = dict(config.mask.options)
        if "start" in {f.name for f in dataclasses.fields(type(config.mask.generator))}:
            options.setdefault("start", 0)
        mask = masking.build(config.mask.strategy, ratio=config.mask.ratio, **options)
    return VideoDataset.from_list(
        d.val_list, root=d.root, classes=d.val_classes or d.classes, transform=ClipTransform(
            size=d.size, crop="centre", flip=False), num_frames=d.num_frames, stride=d.stride,
        decode_size=d.decode_size, sampling="multiview", views=d.test_views, seed=config.seed, mask=mask,
        patch=config.model.patch)


def count_classes(config: FinetuneConfig, dataset: VideoDataset) -> int:
    """``head.num_classes``, else the class-names file's length, else the largest label + 1; every label of the
    training list must be a class (checked here, not when its batch reaches the loss mid-training)."""
    labelled = [r for r in dataset.records if r.label >= 0]
    if not labelled:
        raise ConfigError("data.train_list", "fine-tuning needs labelled videos")
    if config.head.num_classes:
        classes, key = config.head.num_classes, "head.num_classes"
    elif config.data.classes:
        classes, key = len(read_class_names(config.data.classes)), "data.classes"
    else:
        return max(r.label for r in labelled) + 1
    check_labels(dataset, classes, key, config.data.train_list)
    return classes


def check_labels(dataset: VideoDataset, classes: int, key: str, listed_in: str) -> None:
    """Every label of ``dataset`` is below ``classes`` (the count ``key`` gives); else a ConfigError naming both."""
    top = max(dataset.records, key=lambda r: r.label)
    if top.label >= classes:
        raise ConfigError(key, f"{classes} classes, but {listed_in} labels {top.path} as class {top.label} "
                          f"(labels are 0..{classes - 1})")


def build_finetune_method(config: FinetuneConfig, num_classes: int) -> Classification:
    h, m = config.head, config.model
    encoder = encoder_config(config)
    if config.mask is not None:  # MAR: the encoder sees only the visible tokens, in training and inference
        decoder = DecoderConfig(width=m.decoder_width, depth=m.decoder_depth, heads=m.decoder_heads,
                                eps=encoder.eps, head_eps=encoder.eps)
        mae = MAE(encoder, decoder, targets.build("norm_pixels", patch=encoder.patch, channels=encoder.channels))
        bridge = {"width": h.bridge_width, "depth": h.bridge_depth, "heads": h.bridge_heads}
        kind = "bridging" if h.kind == "bridging" else "linear"
        net = MARNet(mae, num_classes, head=kind, recon_weight=h.recon_weight, bridge=bridge, dropout=h.dropout,
                     init_scale=h.init_scale)
    elif h.kind == "bridging":
        raise ConfigError("head.kind", "the bridging head is MAR's: give the config a mask section (running_cell)")
    elif h.kind == "probe":
        net = LinearProbe(VideoViT(encoder), num_classes)
    else:
        net = VideoClassifier(dataclasses.replace(encoder, final_norm=not h.fc_norm), num_classes, fc_norm=h.fc_norm,
                              head_drop=h.dropout, init_scale=h.init_scale)
    mix = config.mixup
    mixing = h.kind != "probe" and (mix.mixup > 0 or mix.cutmix > 0)
    if mixing and (config.train.batch_size * config.data.num_repeats) % 2:
        raise ConfigError("train.batch_size", "mixup pairs each clip with the batch's reverse: use an even batch")
    mixup = None if h.kind == "probe" else build_mixup(mix.mixup, mix.cutmix, mix.prob, mix.switch_prob,
                                                         mix.label_smoothing, num_classes)
    return Classification(net, num_classes, mixup=mixup, label_smoothing=mix.label_smoothing)


def init_from_pretrained(method: Classification, config: FinetuneConfig) -> dict | None:
    if not config.init:
        return None
    prefix = "net.mae." if isinstance(method.net, MARNet) else "net."
    fc_norm = isinstance(method.net, VideoClassifier) and config.head.fc_norm
    skip = ("encoder.norm.",) if fc_norm else ()  # VideoMAE drops the pretraining norm for fc_norm
    return load_pretrained(method, config.init, prefix, method.encoder.config, skip=skip)


def read_label_map(config: FinetuneConfig) -> dict[int, int] | None:
    """``data.class_map``: one ``val_class model_class`` pair per line (names or integers)."""
    d = config.data
    if not d.class_map:
        return None
    val_names = read_class_names(d.val_classes or d.classes) if (d.val_classes or d.classes) else None
    model_names = read_class_names(d.classes) if d.classes else None
    mapping = {}
    if not os.path.isfile(d.class_map):
        raise ConfigError("data.class_map", f"{d.class_map}: no such file")
    for number, line in enumerate(read_lines(d.class_map), 1):
        parts = line.split("#")[0].replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ConfigError("data.class_map", f"{d.class_map}:{number}: expected 'val_class model_class'")
        mapping[_class_index(parts[0], val_names, d.class_map, number)] = _class_index(
            parts[1], model_names, d.class_map, number)
    return mapping


def _class_index(text: str, names: list[str] | None, path: str, number: int) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    if names is None or text not in names:
        raise ConfigError("data.class_map", f"{path}:{number}: unknown class {text!r}")
    return names.index(text)


def finetune(config: FinetuneConfig, resume: bool = False) -> dict:
    """Fine-tune (or probe, or MAR) as ``config`` says, then evaluate the final weights on the validation set."""
    import numpy as np
    import torch

    from maskvid.engine.train import train

    pick_device(config.train.device)  # a device this machine lacks is a config error, before data is read
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)  # timm's mixup draws from numpy
    train_set, val_set = build_finetune_datasets(config)
    classes = count_classes(config, train_set)
    if val_set is not None and not config.data.class_map:
        check_labels(val_set, classes, "head.num_classes" if config.head.num_classes else "data.classes",
                     config.data.val_list)
    method = build_finetune_method(config, classes)
    loaded = None if resume else init_from_pretrained(method, config)
    os.makedirs(config.output_dir, exist_ok=True)
    result = train(method, train_set, config, config.output_dir, resume=resume)
    report = {"train": dataclasses.asdict(result), "init": loaded, "classes": classes}
    if result.status == "finished" and config.data.val_list:
        report["eval"] = evaluate_checkpoint(config, result.checkpoint, method=method, num_classes=classes)
    return report


def evaluate_checkpoint(config: FinetuneConfig, checkpoint: str, method: Classification | None = None,
                        num_classes: int | None = None) -> dict:
    """Multi-view top-1/top-5 of ``checkpoint`` (EMA weights when the run kept them); writes ``eval.json`` and
    ``confusion.png`` into ``config.output_dir``."""
    from maskvid.engine.checkpoint import latest_checkpoint, restore_model
    from maskvid.engine.evaluate import evaluate
    from maskvid.viz import draw_confusion

    device = pick_device(config.train.device)
    dataset = build_eval_dataset(config)
    if dataset is None:
        raise ConfigError("data.val_list", "evaluation needs a validation list")
    if num_classes is None:
        num_classes = config.head.num_classes or count_classes(config, build_finetune_datasets(config)[0])
    method = method or build_finetune_method(config, num_classes)
    path = latest_checkpoint(checkpoint) if os.path.isdir(os.path.join(checkpoint, "checkpoints")) else checkpoint
    ema = os.path.join(path, "ema.safetensors")
    restore_model(method, ema if os.path.exists(ema) else path)
    report = evaluate(method, dataset, num_classes, batch_size=max(1, config.train.batch_size // 2),
                      num_workers=config.train.num_workers, device=device,
                      label_map=read_label_map(config))
    report["checkpoint"] = path
    os.makedirs(config.output_dir, exist_ok=True)
    names = read_class_names(config.data.classes) if config.data.classes else None
    report["confusion_png"] = draw_confusion(report["confusion"], names, os.path.join(config.output_dir,
                                             "confusion.png"), title=f"top-1 {report['top1']:.3f}")
    with open(os.path.join(config.output_dir, "eval.json"), "w") as f:
        json.dump(report, f)
    return report
