"""Config → the objects a run needs: the one place that knows every method (DESIGN.md). Configs hold values; every
``build_*`` here makes one object from them and validates what it can before any video is read.

    method = build_method(config)            # recipes.METHODS[config.method](config)
    train_set = build_dataset(config, "train", method)

Fine-tuning, linear probing and MAR build on these in :mod:`maskvid.finetune_recipes`.
"""

from __future__ import annotations

import os

from maskvid import masking, targets
from maskvid.config import FinetuneConfig, PretrainConfig, encoder_config, target_geometry
from maskvid.data import ClipTransform, VideoDataset
from maskvid.data.datasets import collate
from maskvid.data.flow_cache import FlowCache
from maskvid.data.token_cache import TokenCache
from maskvid.engine.distributed import pick_device
from maskvid.errors import ConfigError
from maskvid.methods.base import MaskedPrediction, PredictionHead, head_names
from maskvid.methods.mam2 import MAM2, MAM2Head
from maskvid.methods.vimpac import VIMPAC
from maskvid.methods.vqvae import VQVAETraining
from maskvid.models import DecoderConfig
from maskvid.models.tokenizers import save_tokenizer
from maskvid.motion.flow_fields import FlowFieldSpec
from maskvid.motion.hog_cells import DenseHOGSpec
from maskvid.motion.trajectory_features import TrajectorySpec
from maskvid.registry import Registry
from maskvid.targets import unnormalize
from maskvid.targets.tokens import TokenIds

# batch keys the data pipeline makes in its workers; a target that reads another key cannot be trained yet
PRODUCED = ("video", "mask", "motion", "motion_valid", "label", "video2", "mask2", "trajectory", "trajectory_valid",
            "flow", "dense_hog", "tokens", "clip_order")


def build_masked_prediction(config: PretrainConfig) -> MaskedPrediction:
    """VideoMAE, MGM and any mix of heads: an encoder and ``config.heads`` (or the one ``target``)."""
    encoder = encoder_config(config)
    if config.mask is None:
        raise ConfigError("mask", f"method {config.method!r} predicts masked tokens: give a mask strategy")
    return MaskedPrediction(encoder, build_heads(config))


def build_tokenizer_training(config: PretrainConfig) -> VQVAETraining:
    """The trainable VQ-VAE of ``config.tokenizer`` and its loss (``maskvid train-tokenizer``)."""
    return VQVAETraining(config.tokenizer.vqvae(), config.tokenizer.commitment)


def build_mam2(config: PretrainConfig) -> MAM2:
    """MAM²: an encoder, the latent regressor and a decoder per entry of ``config.heads`` (appearance, motion)."""
    encoder, m, o = encoder_config(config), config.model, config.mam2
    if config.mask is None:
        raise ConfigError("mask", "MAM² predicts masked tokens: give a mask strategy")
    width, heads = o.width or encoder.width, o.heads or encoder.heads
    if width % heads:
        raise ConfigError("mam2.width", f"{width} is not divisible by {heads} attention heads (mam2.heads)")
    specs = config.head_configs()
    heads = []
    for spec, generated in zip(specs, head_names([s.target for s in specs]), strict=True):
        target = targets.build(spec.target, **target_geometry(spec.target, encoder, config.data.stride),
                               **spec.options)
        heads.append(MAM2Head(spec.name or generated, target, spec.loss, spec.weight,
                              spec.decoder_depth or m.decoder_depth))
    if any(spec.target == "clip_order" for spec in specs) and config.mask.strategy != "tube":
        raise ConfigError("mask.strategy", f"clip order shuffles whole masked tubes: it needs tube masking, not "
                          f"{config.mask.strategy}")
    return MAM2(encoder, heads, o)


def build_vimpac(config: PretrainConfig) -> VIMPAC:
    """VIMPAC: a token encoder, the tied token head and (``vimpac.alpha > 0``) the contrastive head; tokens from
    ``data.tokens_cache`` or, with ``vimpac.tokenizer``, from a frozen tokenizer on the device."""
    encoder, o = encoder_config(config), config.vimpac
    if config.mask is None:
        raise ConfigError("mask", "VIMPAC predicts masked tokens: give a mask strategy (block3d)")
    if o.tokenizer is not None and not os.path.isfile(o.tokenizer):
        raise ConfigError("vimpac.tokenizer", f"{o.tokenizer}: no such file")
    try:
        tokens = TokenIds(vocab_size=encoder.vocab_size or 2, tokenizer=o.tokenizer, patch=encoder.patch)
    except ConfigError as e:
        raise ConfigError("vimpac.tokenizer", e.problem) from None
    return VIMPAC(encoder, tokens, o, pair=config.data.sampling == "pair")


METHODS = Registry("method", "method", {"mae": build_masked_prediction, "vqvae": build_tokenizer_training,
                                        "mam2": build_mam2, "vimpac": build_vimpac})


def build_method(config: PretrainConfig) -> MaskedPrediction:
    return METHODS.get_entry(config.method)(config)


def build_heads(config: PretrainConfig) -> list[PredictionHead]:
    """One :class:`PredictionHead` per entry of ``config.heads`` (decoders default to ``model.decoder_*``)."""
    encoder, m = encoder_config(config), config.model
    specs = config.head_configs()
    heads = []
    for spec, generated in zip(specs, head_names([s.target for s in specs]), strict=True):
        name = spec.name or generated
        width, depth = spec.decoder_width or m.decoder_width, spec.decoder_depth or m.decoder_depth
        decoder = DecoderConfig(width=width, depth=depth, heads=spec.decoder_heads or m.decoder_heads, eps=encoder.eps,
                                head_eps=encoder.eps, locality=m.decoder_locality,
                                grad_checkpointing=m.grad_checkpointing)
        if decoder.width % decoder.heads:
            raise ConfigError("heads.decoder_heads", f"head {name!r}: width {decoder.width} is not divisible by "
                              f"{decoder.heads} heads")
        geometry = target_geometry(spec.target, encoder, config.data.stride)
        target = targets.build(spec.target, **geometry, **spec.options)
        if getattr(target, "per_tube", False):
            raise ConfigError("heads", f"{spec.target} predicts one label per masked tube, with MAM²'s clip-order "
                              "decoder: use method: mam2")
        heads.append(PredictionHead(name, encoder, decoder, target, loss=spec.loss, weight=spec.weight))
    return heads


def build_mask(config: PretrainConfig | FinetuneConfig, inference: bool = False) -> masking.MaskStrategy | None:
    """The mask strategy of ``config.mask`` (None without one). Inference masks are deterministic: a fixed start
    state where the strategy has one (MAR's running cell)."""
    if config.mask is None:
        return None
    options = dict(config.mask.options)
    if inference and "start" in masking.strategy_options(config.mask.strategy):
        options.setdefault("start", 0)
    return masking.build(config.mask.strategy, ratio=config.mask.ratio, **options)


def build_dataset(config: PretrainConfig | FinetuneConfig, split: str = "train", method=None,
                  normalize_on_device: bool = False) -> VideoDataset | None:
    """The ``train`` set (augmented, masked as the config says; for a pretraining method, carrying what its targets
    read) or the multi-view ``val`` set (None without ``data.val_list``). ``normalize_on_device``: the clips stay
    uint8 for the training loop or the evaluation to normalize on its device (``VideoDataset.on_device``)."""
    if split not in ("train", "val"):
        raise ValueError(f"split {split!r} not in train, val")
    d = config.data
    key, path = ("data.train_list", d.train_list) if split == "train" else ("data.val_list", d.val_list)
    if not path:
        if split == "train":
            raise ConfigError(key, "no training list given")
        return None
    if not os.path.exists(path):
        raise ConfigError(key, f"{path}: no such file")
    inputs = _method_inputs(method)
    spec = _worker_spec(method, TrajectorySpec) if "trajectory" in inputs else None
    if d.cache and spec is None:
        raise ConfigError("data.cache", "a flow cache is read only for a trajectory target; this method has none")
    tokens = _token_cache(config, inputs) if split == "train" else None
    common = {"root": d.root, "num_frames": d.num_frames, "stride": d.stride, "decode_size": d.decode_size,
              "seed": config.seed, "patch": config.model.patch, "motion_source": d.motion_source,
              "flow_preset": d.flow_preset, "mask": build_mask(config, inference=split == "val"),
              "motion_vectors": bool({"motion", "motion_valid"} & set(inputs)), "clip_order": "clip_order" in inputs,
              "trajectories": spec, "cache": FlowCache(d.cache, spec, d.decode_size) if d.cache else None,
              "flow_fields": _worker_spec(method, FlowFieldSpec) if "flow" in inputs else None,
              "dense_hog": _worker_spec(method, DenseHOGSpec) if "dense_hog" in inputs else None}
    if split == "val":
        return VideoDataset.from_list(path, classes=d.val_classes or d.classes, sampling="multiview",
                                      views=d.test_views,
                                      transform=ClipTransform(size=d.size, crop="centre", flip=False,
                                                              normalize=not normalize_on_device),
                                      bad_videos="skip", **common)
    transform = ClipTransform(size=d.size, crop=d.crop, flip=d.flip, randaugment=d.randaugment, erase=d.erase,
                              normalize=not normalize_on_device)
    return VideoDataset.from_list(path, classes=d.classes, require_labels=isinstance(config, FinetuneConfig),
                                  transform=transform, sampling=d.sampling, pair_distance=d.pair_max_distance,
                                  num_repeats=d.num_repeats, tokens=tokens, **common)


def _token_cache(config: PretrainConfig | FinetuneConfig, inputs: tuple[str, ...]) -> TokenCache | None:
    """The token cache the training set reads (``data.tokens_cache``), checked against the run's clip geometry;
    a method reading ``tokens`` without one is a ConfigError now, not a KeyError in the first batch."""
    d = config.data
    if not d.tokens_cache:
        if "tokens" in inputs:
            raise ConfigError("data.tokens_cache", "the method reads token ids from the batch: give a cache from "
                              "maskvid extract tokens (or a tokenizer option on the tokens target)")
        return None
    if not os.path.isdir(d.tokens_cache):
        raise ConfigError("data.tokens_cache", f"{d.tokens_cache}: no such directory")
    cache = TokenCache(d.tokens_cache)
    cache.check_run(d.size, config.model.patch, d.decode_size, config.model.vocab_size)
    return cache


def _method_inputs(method) -> tuple[str, ...]:
    """The batch keys ``method`` reads, each one the data pipeline can make (else a ConfigError now)."""
    inputs = tuple(getattr(method, "inputs", ()))
    for key in inputs:
        if key not in PRODUCED and key.removesuffix("2") not in PRODUCED:  # "…2": the pair's second clip
            raise ConfigError("heads", f"the method reads {key!r}, which the data pipeline does not make (it makes "
                              f"{', '.join(PRODUCED)})")
    return inputs


def _worker_spec(method, kind: type):
    """How the workers make trajectories or flows: the ``spec`` of the method's targets of that ``kind`` (one per
    run: the workers make one set per clip)."""
    owned = [head.target for head in getattr(method, "heads", ())] or list(getattr(method, "targets", ()))
    specs = {target.spec for target in owned if isinstance(getattr(target, "spec", None), kind)}
    if len(specs) > 1:
        raise ConfigError("heads", f"two targets ask the workers for different {kind.__name__} options "
                          f"({', '.join(map(str, specs))}); give them the same")
    return specs.pop()


def pretrain(config: PretrainConfig, resume: bool = False):
    """Build the method and the data from ``config`` and train; the run directory is ``config.output_dir``."""
    import torch

    from maskvid.engine.train import train

    pick_device(config.train.device)  # a device this machine lacks is a config error, before data is read
    torch.manual_seed(config.seed)  # the model's initialization
    method = build_method(config)
    dataset = build_dataset(config, "train", method, normalize_on_device=True)
    monitor = build_knn_monitor(config, method) if config.train.knn_every else None
    os.makedirs(config.output_dir, exist_ok=True)
    return train(method, dataset, config, config.output_dir, resume=resume, monitor=monitor)


def build_knn_monitor(config: PretrainConfig, method):
    """The kNN monitor of ``train.knn_every``: the labelled bank and queries as the encoder reads them (centre crop,
    no flip, no mask; tokens from the run's cache when it reads one, entries added as needed); their clips stay
    uint8 for the monitor to normalize on its device."""
    from maskvid.engine.knn import KNNMonitor

    if not hasattr(method, "features"):
        raise ConfigError("train.knn_every", f"method {config.method!r} has no encoder features to monitor")
    d = config.data
    tokens = _token_cache(config, _method_inputs(method))  # checked once, shared by both sets
    sets = []
    for key, path in (("data.knn_train_list", d.knn_train_list), ("data.knn_val_list", d.knn_val_list)):
        if not os.path.exists(path):
            raise ConfigError(key, f"{path}: no such file")
        sets.append(VideoDataset.from_list(
            path, root=d.root, require_labels=True, num_frames=d.num_frames, stride=d.stride,
            decode_size=d.decode_size, seed=config.seed, patch=config.model.patch,
            transform=ClipTransform(size=d.size, crop="centre", flip=False, normalize=False), tokens=tokens,
            bad_videos="skip"))
    classes = 1 + max(r.label for s in sets for r in s.records)
    return KNNMonitor(*sets, num_classes=classes, batch_size=config.train.batch_size,
                      num_workers=config.train.num_workers, k=config.train.knn_k)


def train_tokenizer(config: PretrainConfig, resume: bool = False) -> dict:
    """Train the VQ-VAE of ``config.tokenizer`` on every frame of the training list's clips (the pretraining loop:
    checkpoints, resume, metrics), write ``tokenizer.safetensors`` to the run directory, and report its
    reconstruction error and codebook usage on up to 8 batches of the training clips."""
    import torch

    if config.method != "vqvae":
        raise ConfigError("method", f"train-tokenizer trains method: vqvae, the config says {config.method!r}")
    result = pretrain(config, resume=resume)
    method = build_method(config)
    from maskvid.engine.checkpoint import restore_model

    restore_model(method, os.path.join(result.checkpoint, "model.safetensors"))
    method.eval()
    dataset = build_dataset(config, "train", method)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.train.batch_size, collate_fn=collate)
    recon, ids = [], []
    with torch.no_grad():
        for _, batch in zip(range(8), loader, strict=False):
            step = method(batch["video"])
            recon.append(float(step.metrics["recon"]))
            frames = unnormalize(batch["video"]).transpose(1, 2).flatten(0, 1)
            ids.append(method.tokenizer.encode(frames))
    usage = method.tokenizer.quantizer.usage(torch.cat([i.flatten() for i in ids]))
    path = save_tokenizer(method.tokenizer, os.path.join(result.run_dir, "tokenizer.safetensors"))
    return {"status": result.status, "step": result.step, "run_dir": result.run_dir, "tokenizer": path,
            "recon_mse": sum(recon) / len(recon), **usage, "first_loss": result.first_loss,
            "last_loss": result.last_loss}
