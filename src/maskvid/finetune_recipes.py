"""Config → the objects a fine-tuning run needs (fine-tuning, linear probing, MAR) and the run itself, then its
multi-view evaluation. The data and masks come from :mod:`maskvid.recipes`, the one place that knows every
pretraining method; this module only adds the classifiers.

    report = finetune(config)                 # train, then evaluate the final weights
    report = evaluate_checkpoint(config, run)  # multi-view top-1/top-5 of a run's checkpoint
"""

from __future__ import annotations

import dataclasses
import os

from maskvid import targets
from maskvid.config import FinetuneConfig, encoder_config, target_geometry
from maskvid.data import VideoDataset, read_class_names
from maskvid.data.annotations import read_label_map
from maskvid.engine.distributed import pick_device, ranks
from maskvid.errors import ConfigError
from maskvid.methods.finetune import Classification, LinearProbe, build_mixup
from maskvid.methods.mae import MAE
from maskvid.methods.mar import MARNet
from maskvid.models import DecoderConfig, VideoClassifier, VideoViT
from maskvid.pretrained import load_pretrained
from maskvid.recipes import build_dataset
from maskvid.targets.tokens import TokenIds


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
                                eps=encoder.eps, head_eps=encoder.eps, locality=m.decoder_locality,
                                grad_checkpointing=m.grad_checkpointing)
        mae = MAE(encoder, decoder, targets.build("norm_pixels", **target_geometry("norm_pixels", encoder)))
        bridge = {"width": h.bridge_width, "depth": h.bridge_depth, "heads": h.bridge_heads}
        kind = "bridging" if h.kind == "bridging" else "linear"
        net = MARNet(mae, num_classes, head=kind, recon_weight=h.recon_weight, bridge=bridge, dropout=h.dropout,
                     init_scale=h.init_scale)
    elif h.kind == "bridging":
        raise ConfigError("head.kind", "the bridging head is MAR's: give the config a mask section (running_cell)")
    elif h.kind == "probe":
        net = LinearProbe(VideoViT(encoder), num_classes)
    else:
        net = VideoClassifier(dataclasses.replace(encoder, final_norm=not h.fc_norm and encoder.final_norm),
                              num_classes, fc_norm=h.fc_norm, head_drop=h.dropout, init_scale=h.init_scale,
                              pool=h.pool)
    mix = config.mixup
    mixing = h.kind != "probe" and (mix.mixup > 0 or mix.cutmix > 0)
    if mixing and (config.train.batch_size * config.data.num_repeats) % 2:
        raise ConfigError("train.batch_size", "mixup pairs each clip with the batch's reverse: use an even batch")
    mixup = None if h.kind == "probe" else build_mixup(mix.mixup, mix.cutmix, mix.prob, mix.switch_prob,
                                                         mix.label_smoothing, num_classes)
    tokens = None
    if config.tokenizer is not None:  # a token-stem encoder (VIMPAC): ids made from the clips on the device
        if not os.path.isfile(config.tokenizer):
            raise ConfigError("tokenizer", f"{config.tokenizer}: no such file")
        tokens = TokenIds(vocab_size=encoder.vocab_size, tokenizer=config.tokenizer, patch=encoder.patch)
        if tokens.vocab_size != encoder.vocab_size:
            raise ConfigError("model.vocab_size", f"{encoder.vocab_size}, but {config.tokenizer} has "
                              f"{tokens.vocab_size} codes")
    return Classification(net, num_classes, mixup=mixup, label_smoothing=mix.label_smoothing, tokens=tokens)


def init_from_pretrained(method: Classification, config: FinetuneConfig) -> dict | None:
    if not config.init:
        return None
    prefix = "net.mae." if isinstance(method.net, MARNet) else "net."
    fc_norm = isinstance(method.net, VideoClassifier) and config.head.fc_norm
    skip = ("encoder.norm.",) if fc_norm else ()  # VideoMAE drops the pretraining norm for fc_norm
    return load_pretrained(method, config.init, prefix, method.encoder.config, skip=skip)


def finetune(config: FinetuneConfig, resume: bool = False) -> dict:
    """Fine-tune (or probe, or MAR) as ``config`` says, then evaluate the final weights on the validation set."""
    import numpy as np
    import torch

    from maskvid.engine.train import train

    pick_device(config.train.device)  # a device this machine lacks is a config error, before data is read
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)  # timm's mixup draws from numpy
    train_set, val_set = build_dataset(config, "train", normalize_on_device=True), build_dataset(config, "val")
    classes = count_classes(config, train_set)
    if val_set is not None and not config.data.class_map:
        check_labels(val_set, classes, "head.num_classes" if config.head.num_classes else "data.classes",
                     config.data.val_list)
    method = build_finetune_method(config, classes)
    loaded = None if resume else init_from_pretrained(method, config)
    os.makedirs(config.output_dir, exist_ok=True)
    with ranks(config.train.device):  # under torchrun the ranks stay joined for the evaluation: they share it
        result = train(method, train_set, config, config.output_dir, resume=resume)
        report = {"train": dataclasses.asdict(result), "init": loaded, "classes": classes}
        if result.status == "finished" and config.data.val_list:
            report["eval"] = evaluate_checkpoint(config, result.checkpoint, method=method, num_classes=classes)
    return report


def class_map(config: FinetuneConfig) -> dict[int, int] | None:
    d = config.data
    return read_label_map(d.class_map, d.val_classes or d.classes, d.classes)


def evaluate_checkpoint(config: FinetuneConfig, checkpoint: str, method: Classification | None = None,
                        num_classes: int | None = None) -> dict:
    """Multi-view top-1/top-5 of ``checkpoint`` (EMA weights when the run kept them); writes ``eval.json`` and
    ``confusion.png`` into ``config.output_dir``. Under torchrun the ranks share the videos and rank 0 writes."""
    with ranks(config.train.device) as (device, info):
        return _evaluate_checkpoint(config, checkpoint, method, num_classes, device, info)


def _evaluate_checkpoint(config: FinetuneConfig, checkpoint: str, method: Classification | None,
                         num_classes: int | None, device, info) -> dict:
    from maskvid.engine.checkpoint import latest_checkpoint, restore_model
    from maskvid.engine.evaluate import evaluate, write_report

    dataset = build_dataset(config, "val", normalize_on_device=True)
    if dataset is None:
        raise ConfigError("data.val_list", "evaluation needs a validation list")
    if num_classes is None:
        num_classes = config.head.num_classes or count_classes(config, build_dataset(config, "train"))
    method = method or build_finetune_method(config, num_classes)
    path = latest_checkpoint(checkpoint) if os.path.isdir(os.path.join(checkpoint, "checkpoints")) else checkpoint
    ema = os.path.join(path, "ema.safetensors")
    restore_model(method, ema if os.path.exists(ema) else path)
    report = evaluate(method, dataset, num_classes, batch_size=max(1, config.train.batch_size // 2),
                      num_workers=config.train.num_workers, device=device,
                      label_map=class_map(config), info=info)
    report["checkpoint"] = path
    if not info.main:
        return report
    names = read_class_names(config.data.classes) if config.data.classes else None
    return write_report(report, config.output_dir, names)
