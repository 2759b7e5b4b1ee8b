"""Hugging Face VideoMAE and original VideoMAE checkpoints ↔ maskvid's MAE and classifier.

    mae = from_hf("videomae-base/")          # VideoMAEForPreTraining dir → maskvid MAE (same loss and predictions)
    clf = from_hf("videomae-base-finetuned-kinetics/")  # VideoMAEForVideoClassification → VideoClassifier
    mae = from_hf("checkpoint.pth")          # the original VideoMAE repo's layout ("model" / "module" key)
    to_hf(mae, "out/")                       # config.json + model.safetensors that transformers loads

Only the parameter names differ: maskvid keeps the original VideoMAE names (fused ``attn.qkv``, ``q_bias``,
``v_bias``), HF splits q/k/v (k has no bias). Both HF bias layouts are read (``q_bias``/``v_bias`` of older
transformers, ``query.bias``/``value.bias`` of newer ones); ``to_hf`` writes the older one, which every version
loads. Input layout: HF takes ``(B, T, C, H, W)``, maskvid ``(B, C, T, H, W)`` — convert with :func:`from_hf_layout`
and :func:`to_hf_layout` at this boundary only. Nothing here needs transformers installed.
"""

from __future__ import annotations

import json
import os
import re

import torch
from safetensors.torch import load_file, save_file

from maskvid.errors import CheckpointError
from maskvid.methods.base import MaskedPrediction
from maskvid.methods.mae import MAE
from maskvid.models import DecoderConfig, VideoClassifier, ViTConfig
from maskvid.targets import build as build_target

HF_EPS = 1e-5  # HF's decoder.norm and fc_norm are plain nn.LayerNorm(width)


def from_hf_layout(pixel_values: torch.Tensor) -> torch.Tensor:
    """HF ``(B, T, C, H, W)`` → maskvid ``(B, C, T, H, W)``."""
    return pixel_values.transpose(1, 2)


def to_hf_layout(video: torch.Tensor) -> torch.Tensor:
    """maskvid ``(B, C, T, H, W)`` → HF ``(B, T, C, H, W)``."""
    return video.transpose(1, 2)


# HF names → maskvid names (applied in order, after the "videomae." prefix is mapped)
_HF_TO_OURS = [
    (r"^videomae\.embeddings\.patch_embeddings\.projection\.", "encoder.patch_embed."),
    (r"^videomae\.encoder\.layer\.", "encoder.blocks."),
    (r"^videomae\.layernorm\.", "encoder.norm."),
    (r"^decoder\.decoder_layers\.", "decoder.blocks."),
    (r"^classifier\.", "head."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.attention\.attention\.(q_bias|v_bias)$", r".attn.\1"),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
]
# original VideoMAE repo names → maskvid names
_ORIGINAL_TO_OURS = [(r"patch_embed\.proj\.", "patch_embed."), (r"^(blocks|patch_embed|norm)\.", r"encoder.\1.")]
# VideoMAE's one decoder (HF and original names, after the rules above) ↔ maskvid's first prediction head
_DECODER_TO_HEAD = [(r"^(decoder\.|encoder_to_decoder\.|mask_token$)", r"heads.0.\1")]
_HEAD_TO_DECODER = [(r"^heads\.0\.", "")]


def _rename(state: dict, rules) -> dict:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _fuse_qkv(state: dict) -> dict:
    """Split HF q/k/v (``…attention.attention.{query,key,value}``) → fused ``attn.qkv.weight`` + q/v biases."""
    out = {k: v for k, v in state.items() if ".attention.attention." not in k}
    prefixes = {k.split(".attention.attention.")[0] for k in state if ".attention.attention." in k}
    for prefix in prefixes:
        def part(name: str, prefix=prefix):
            return state.get(f"{prefix}.attention.attention.{name}")

        out[f"{prefix}.attn.qkv.weight"] = torch.cat([part("query.weight"), part("key.weight"), part("value.weight")])
        q_bias = part("q_bias") if part("q_bias") is not None else part("query.bias")
        v_bias = part("v_bias") if part("v_bias") is not None else part("value.bias")
        if q_bias is not None:
            out[f"{prefix}.attn.q_bias"], out[f"{prefix}.attn.v_bias"] = q_bias, v_bias
    return out


def _read_state(path: str) -> dict:
    try:
        if path.endswith(".safetensors"):
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unreadable or unsafe file is one CheckpointError
        raise CheckpointError(f"{path}: cannot be loaded safely ({type(e).__name__}: {e})") from e


def _hf_weights(directory: str) -> dict:
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return _read_state(path)
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin")


def _configs_from_hf(cfg: dict) -> tuple[ViTConfig, DecoderConfig]:
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"hidden_act {cfg['hidden_act']!r}: only gelu is supported")
    size = cfg.get("image_size", 224)
    patch = cfg.get("patch_size", 16)
    encoder = ViTConfig(
        width=cfg.get("hidden_size", 768),
        depth=cfg.get("num_hidden_layers", 12),
        heads=cfg.get("num_attention_heads", 12),
        mlp_ratio=cfg.get("intermediate_size", 3072) / cfg.get("hidden_size", 768),
        patch=(cfg.get("tubelet_size", 2), patch, patch),
        num_frames=cfg.get("num_frames", 16),
        size=size if isinstance(size, int) else size[0],
        channels=cfg.get("num_channels", 3),
        qv_bias=cfg.get("qv_bias", cfg.get("qkv_bias", True)),
        final_norm=not cfg.get("use_mean_pooling", True),
        eps=cfg.get("layer_norm_eps", 1e-12),
    )
    decoder = DecoderConfig(
        width=cfg.get("decoder_hidden_size", 384),
        depth=cfg.get("decoder_num_hidden_layers", 4),
        heads=cfg.get("decoder_num_attention_heads", 6),
        mlp_ratio=cfg.get("decoder_intermediate_size", 1536) / cfg.get("decoder_hidden_size", 384),
        qv_bias=encoder.qv_bias,
        eps=encoder.eps,
        head_eps=HF_EPS,
    )
    return encoder, decoder


def _load_into(model: torch.nn.Module, state: dict, source: str) -> torch.nn.Module:
    if isinstance(model, MAE):
        state = _rename(state, _DECODER_TO_HEAD)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{source}: weights do not fit the architecture read from it — {e}") from e
    missing = [k for k in missing if ".target." not in k]
    if missing or unexpected:
        raise CheckpointError(f"{source}: weights do not fit — missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def from_hf(path: str | os.PathLike, **overrides):
    """A maskvid :class:`MAE` or :class:`VideoClassifier` from an HF VideoMAE directory or an original ``.pth``.

    ``overrides`` (original checkpoints only, which carry no config): ``num_frames``, ``size``, ``heads``,
    ``decoder_heads``, ``target`` (``norm_pixels`` by default), ``num_classes``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        config_path = os.path.join(path, "config.json")
        if not os.path.exists(config_path):
            raise CheckpointError(f"{path}: no config.json — not a Hugging Face model directory")
        with open(config_path) as f:
            cfg = json.load(f)
        state = _fuse_qkv(_rename(_hf_weights(path), _HF_TO_OURS))
        encoder, decoder = _configs_from_hf(cfg)
        if any(k.startswith("decoder.") for k in state):
            target = build_target("norm_pixels" if cfg.get("norm_pix_loss", True) else "pixels", patch=encoder.patch)
            return _load_into(MAE(encoder, decoder, target), state, path)
        classes = state["head.weight"].shape[0]
        model = VideoClassifier(encoder, classes, fc_norm="fc_norm.weight" in state, head_eps=HF_EPS,
                                pool="mean" if "fc_norm.weight" in state else "first")
        return _load_into(model, state, path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file or directory")
    return _from_original(path, _read_state(path), **overrides)


def _from_original(path: str, checkpoint: dict, num_frames: int = 16, size: int = 224, heads: int | None = None,
                   decoder_heads: int | None = None, target: str = "norm_pixels", **_) -> torch.nn.Module:
    state = checkpoint
    for key in ("model", "module", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = _rename({k.removeprefix("module."): v for k, v in state.items()}, _ORIGINAL_TO_OURS)
    if "encoder.patch_embed.weight" not in state:
        raise CheckpointError(f"{path}: not a VideoMAE checkpoint (no patch_embed.proj.weight)")
    conv = state["encoder.patch_embed.weight"]  # (D, C, t, p, p)
    width = conv.shape[0]
    depth = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
    fc1 = state["encoder.blocks.0.mlp.fc1.weight"]
    encoder = ViTConfig(width=width, depth=depth, heads=heads or max(width // 64, 1), mlp_ratio=fc1.shape[0] / width,
                        patch=tuple(conv.shape[2:]), num_frames=num_frames, size=size, channels=conv.shape[1],
                        qv_bias="encoder.blocks.0.attn.q_bias" in state, final_norm="encoder.norm.weight" in state,
                        pos_embed="learned" if "encoder.pos_embed" in state else "sincos")
    if "encoder.pos_embed" in state:
        state["encoder.pos_embed.pos_embed"] = state.pop("encoder.pos_embed").reshape(-1, width)
    if any(k.startswith("decoder.") for k in state):
        d_width = state["decoder.head.weight"].shape[1]
        d_depth = len({k.split(".")[2] for k in state if k.startswith("decoder.blocks.")})
        d_fc1 = state["decoder.blocks.0.mlp.fc1.weight"]
        decoder = DecoderConfig(width=d_width, depth=d_depth, heads=decoder_heads or max(d_width // 64, 1),
                                mlp_ratio=d_fc1.shape[0] / d_width, qv_bias=encoder.qv_bias)
        return _load_into(MAE(encoder, decoder, build_target(target, patch=encoder.patch)), state, path)
    model = VideoClassifier(encoder, state["head.weight"].shape[0], fc_norm="fc_norm.weight" in state,
                            pool="mean" if "fc_norm.weight" in state else "first")
    return _load_into(model, state, path)


def _split_qkv(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        match = re.match(r"(.*)\.attn\.(qkv\.weight|q_bias|v_bias)$", key)
        if not match:
            out[key] = value
            continue
        prefix, name = match.groups()
        if name == "qkv.weight":
            for part, chunk in zip(("query", "key", "value"), value.chunk(3), strict=True):
                out[f"{prefix}.attention.attention.{part}.weight"] = chunk
        else:
            out[f"{prefix}.attention.attention.{name}"] = value
    return out


_OURS_TO_HF = [
    (r"^encoder\.patch_embed\.", "videomae.embeddings.patch_embeddings.projection."),
    (r"^encoder\.blocks\.", "videomae.encoder.layer."),
    (r"^encoder\.norm\.", "videomae.layernorm."),
    (r"^decoder\.blocks\.", "decoder.decoder_layers."),
    (r"^head\.", "classifier."),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
]


def _check_exportable(encoder: ViTConfig) -> None:
    problems = []
    if encoder.attention != "joint":
        problems.append(f"attention {encoder.attention!r} (HF has joint only)")
    if encoder.pos_embed != "sincos":
        problems.append(f"pos_embed {encoder.pos_embed!r} (HF has the fixed sincos table only)")
    if encoder.stem != "tubelet" or encoder.cls_token or encoder.hide != "drop":
        problems.append(f"stem {encoder.stem!r}, cls_token {encoder.cls_token}, hide {encoder.hide!r} (HF has "
                        "tubelets, no [CLS], dropped tokens)")
    if encoder.layer_scale:
        problems.append("layer_scale (HF has none)")
    if encoder.patch[1] != encoder.patch[2]:
        problems.append(f"non-square patch {encoder.patch}")
    if problems:
        raise CheckpointError("cannot write a Hugging Face VideoMAE: " + "; ".join(problems))


def to_hf(model: torch.nn.Module, out_dir: str | os.PathLike) -> str:
    """Write ``model`` (an :class:`MAE` or :class:`VideoClassifier`) as a directory transformers loads with
    ``VideoMAEForPreTraining`` / ``VideoMAEForVideoClassification.from_pretrained``. HF's decoder norm and fc_norm
    use eps 1e-5; a model trained with another eps there differs by that (≈1e-6 relative)."""
    enc = model.encoder.config
    _check_exportable(enc)
    if any(name.endswith("locality.slopes") for name, _ in model.named_parameters()):
        raise CheckpointError("cannot write a Hugging Face VideoMAE: HF's decoder has no place for the locality "
                              "bias (model.decoder_locality)")
    cfg = {
        "model_type": "videomae", "image_size": enc.size, "patch_size": enc.patch[1], "num_channels": enc.channels,
        "num_frames": enc.num_frames, "tubelet_size": enc.patch[0], "hidden_size": enc.width,
        "num_hidden_layers": enc.depth, "num_attention_heads": enc.heads,
        "intermediate_size": int(enc.width * enc.mlp_ratio), "hidden_act": "gelu", "layer_norm_eps": enc.eps,
        "qkv_bias": enc.qv_bias, "use_mean_pooling": not enc.final_norm,
    }
    if isinstance(model, MaskedPrediction):
        if len(model.heads) != 1:
            raise CheckpointError(f"HF VideoMAE has one decoder; this model has {len(model.heads)} heads")
        dec, target = model.heads[0].decoder_config, model.heads[0].target
        if target.name not in ("pixels", "norm_pixels"):
            raise CheckpointError(f"HF VideoMAE predicts pixels; this model's target is {target.name}")
        cfg.update(architectures=["VideoMAEForPreTraining"], decoder_hidden_size=dec.width,
                   decoder_num_hidden_layers=dec.depth, decoder_num_attention_heads=dec.heads,
                   decoder_intermediate_size=int(dec.width * dec.mlp_ratio),
                   norm_pix_loss=target.name == "norm_pixels")
    elif isinstance(model, VideoClassifier):
        if model.pool == "mean" and enc.final_norm:
            raise CheckpointError("HF's mean-pooling classifier has no encoder norm; this model has one")
        classes = model.head.out_features
        cfg.update(architectures=["VideoMAEForVideoClassification"], use_mean_pooling=model.pool == "mean",
                   id2label={str(i): f"LABEL_{i}" for i in range(classes)},
                   label2id={f"LABEL_{i}": i for i in range(classes)})
    else:
        raise CheckpointError(f"to_hf takes an MAE or a VideoClassifier, not {type(model).__name__}")
    state = _rename(model.state_dict(), _HEAD_TO_DECODER)
    state = _rename(_split_qkv(state), _OURS_TO_HF)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return out_dir
