"""Every configuration value is checked when the config is made, before any data is read, and a bad one is a
ConfigError naming its dotted key — the hostile pass's list, the device and label checks, and a property test over
the whole schema."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskvid.config import FinetuneConfig, PretrainConfig, apply_overrides, from_dict, load_config
from maskvid.errors import ConfigError
from maskvid.finetune_recipes import finetune
from maskvid.recipes import pretrain

PRETRAIN = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain", "videomae_micro.yaml")
FINETUNE = os.path.join(os.path.dirname(__file__), "..", "configs", "finetune", "videomae_micro.yaml")

HOSTILE = [  # (override, the key the error must name) — each once crashed mid-run or passed silently
    ("model.patch=[0,8,8]", "model.patch[0]"),
    ("model.patch=[2,8]", "model.patch"),
    ("model.patch=abc", "model.patch"),
    ("model.patch=[2,8", "model.patch"),  # a YAML syntax error in --set
    ("model.decoder_heads=0", "model.decoder_heads"),
    ("train.batch_size=2.5", "train.batch_size"),
    ("seed=1.5", "seed"),
    ("seed=abc", "seed"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.lr=.inf", "optim.lr"),
    ("optim.betas=[2,3]", "optim.betas[0]"),
    ("optim.min_lr=-1", "optim.min_lr"),
    ("optim.clip_grad=-1", "optim.clip_grad"),
    ("optim.warmup_steps=-5", "optim.warmup_steps"),
    ("train.max_steps=true", "train.max_steps"),
    ("data.flip=maybe", "data.flip"),
    ("data.decode_size=-5", "data.decode_size"),
    ("train.device=gpu0", "train.device"),
    ("data.test_views=[0,3]", "data.test_views[0]"),
    ("model.overrides={heads: 0}", "model.overrides.heads"),
    ("mask.options={variant: zebra}", "mask.options.variant"),
    ("data.num_frames=15", "model.patch"),  # the tubelet (2, 8, 8) no longer divides the clip
]


@pytest.mark.parametrize(("override", "key"), HOSTILE, ids=[o for o, _ in HOSTILE])
@pytest.mark.parametrize("config", [PRETRAIN, FINETUNE], ids=["pretrain", "finetune"])
def test_hostile_values_name_their_key(config, override, key):
    kind = FinetuneConfig if config == FINETUNE else PretrainConfig
    if override.startswith("mask.") and kind is FinetuneConfig:
        override = override.replace("mask.options=", "mask={strategy: running_cell, ratio: 0.5, options: ") + "}"
    with pytest.raises(ConfigError) as caught:
        load_config(config, [override], kind=kind)
    assert caught.value.key == key, str(caught.value)
    assert f"config key '{key}'" in str(caught.value)


def test_a_device_this_machine_lacks_stops_before_any_data_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = load_config(PRETRAIN, ["train.device=cuda", f"data.train_list={tmp_path / 'missing.csv'}"])
    with pytest.raises(ConfigError, match="train.device.*no CUDA device"):
        pretrain(config)


def test_labels_beyond_num_classes_stop_before_training(synth_motion, tmp_path):
    out = tmp_path / "run"
    config = load_config(FINETUNE, [f"data.train_list={os.path.join(synth_motion, 'train.csv')}",
                                    "data.classes=null", "data.val_list=null", "head.num_classes=2",
                                    f"output_dir={out}"], kind=FinetuneConfig)
    with pytest.raises(ConfigError, match=r"head.num_classes.*2 classes, but .*train.csv labels .* as class 2"):
        finetune(config)
    assert not (out / "checkpoints").exists()


# ---- the whole schema, driven with arbitrary values ---------------------------------------------------------


def _section(hint):
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) is tuple:  # a list of sections (heads) is one value: the list
        return None
    inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return inner[0] if inner else None


def _leaves(cls, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, annotation) of every value in the schema."""
    out = []
    for name, hint in typing.get_type_hints(cls).items():
        if name == "generator":
            continue
        section = _section(hint)
        out += _leaves(section, f"{prefix}{name}.") if section else [(prefix + name, hint)]
    return out


KEYS = {kind: _leaves(kind) for kind in (PretrainConfig, FinetuneConfig)}
# a value can also break a rule that another key states (the tubelet must divide the clip, heads the width)
ALSO_NAMED = {"data.num_frames": ("model.patch",), "data.size": ("model.patch",),
              "model.decoder_width": ("model.decoder_heads",), "head.bridge_width": ("head.bridge_heads",),
              "model.preset": ("model.",), "model.overrides": ("model.",), "mask.strategy": ("mask.",),
              "mask.ratio": ("mask.",), "target.name": ("target.",),
              "model.attention": ("model.hide",)}  # an axial layout (t_hw) needs hide: replace, the key named
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.integers(-(2**70), 2**70), st.floats(),
    st.sampled_from(["", "abc", "1e-3", "cuda", "cpu", "tube", "pixels", "base", "joint", "bf16", "t_hw"]),
    st.lists(st.one_of(st.integers(-2, 20), st.floats(-2, 2), st.text(max_size=2)), max_size=4),
    st.dictionaries(st.sampled_from(["width", "heads", "variant", "ratio", "x"]), st.integers(-2, 8), max_size=2),
)


def _conforms(hint, value) -> bool:
    """An independent look at a loaded value: is it what the annotation says (and finite, for numbers)?"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_conforms(a, value) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple and args[-1] is Ellipsis:
        return isinstance(value, tuple) and all(_conforms(args[0], v) for v in value)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_conforms, args, value))
    if hint is float:
        return type(value) is float and math.isfinite(value)
    if hint is int:
        return type(value) is int
    return isinstance(value, origin or hint)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from([PretrainConfig, FinetuneConfig]), pick=st.integers(0, 10**6), value=VALUES)
def test_any_value_of_any_key_loads_typed_or_is_a_config_error_naming_it(kind, pick, value):
    key, hint = KEYS[kind][pick % len(KEYS[kind])]
    values = {}
    node = values
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    try:
        config = from_dict(kind, values)
    except ConfigError as e:
        named = (key,) + ALSO_NAMED.get(key, ())
        assert e.key == key or e.key.startswith((f"{key}[", f"{key}.")) or e.key.startswith(named), (key, e)
        return
    loaded = config
    for part in parts:
        loaded = getattr(loaded, part) if not isinstance(loaded, dict) else loaded[part]
    if not key.endswith(("options", "overrides")):
        assert _conforms(hint, loaded), (key, value, loaded)
    assert from_dict(kind, config.to_dict()).to_dict() == config.to_dict()  # what loads, saves and reloads


def test_overrides_parse_yaml_and_name_bad_syntax():
    assert apply_overrides({}, ["optim.lr=1e-3", "model.patch=[2, 16, 16]"]) == {
        "optim": {"lr": "1e-3"}, "model": {"patch": [2, 16, 16]}}
    with pytest.raises(ConfigError, match="data.size.*not valid YAML"):
        apply_overrides({}, ["data.size={"])


def test_configs_readme_is_generated_from_the_field_docstrings():
    """Every key has a docstring, and configs/README.md's tables are what they render to
    (`python -m maskvid.config.docs` rewrites them)."""
    from maskvid.config import docs

    readme = Path(docs.README).read_text()
    assert docs.replace_block(readme, docs.render()) == readme, "run: python -m maskvid.config.docs"
    keys = {k for k, _, _ in docs.rows(PretrainConfig, instance=PretrainConfig())}
    assert {"data.sampling", "data.pair_max_distance", "data.motion_source", "heads", "model.stem"} <= keys


def test_every_shipped_config_loads_and_its_method_builds(tmp_path, monkeypatch):
    """The paper-scale recipes are never trained in CI; at least their keys, values and heads must be right. A
    tokenizer a recipe reads (a run's output) is stood in for by a random one at the same relative path."""
    import yaml

    from maskvid.config import FinetuneConfig
    from maskvid.models.tokenizer import VQVAE, VQVAEConfig
    from maskvid.models.tokenizers import save_tokenizer
    from maskvid.recipes import build_method

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "configs"))
    pretrain = sorted(f for f in os.listdir(os.path.join(root, "pretrain")) if f.endswith(".yaml"))
    finetune = sorted(f for f in os.listdir(os.path.join(root, "finetune")) if f.endswith(".yaml"))
    assert {"mme_vit_b.yaml", "mme_micro.yaml", "mam2_micro.yaml", "mam2_vit_b.yaml"} <= set(pretrain)
    monkeypatch.chdir(tmp_path)
    for name in pretrain:
        with open(os.path.join(root, "pretrain", name)) as f:
            values = yaml.safe_load(f)
        heads = values.get("heads") or []
        tokenizers = [h["options"]["tokenizer"] for h in heads if "tokenizer" in h.get("options", {})]
        tokenizers += [values["vimpac"]["tokenizer"]] if values.get("vimpac", {}).get("tokenizer") else []
        for path in tokenizers:
            codes = values["model"].get("vocab_size") or 64
            save_tokenizer(VQVAE(VQVAEConfig(factor=values["model"]["patch"][1], codebook_size=codes, code_dim=8,
                                             width=16)), path)
        config = load_config(os.path.join(root, "pretrain", name))
        method = build_method(config)
        assert getattr(method, "heads", None) or getattr(method, "tasks", None) or method.token_head, name
        assert method.encoder.config.width == {"micro": 96, "base": 768, "large": 1024}[config.model.preset]
        assert method.encoder.config.grid == tuple(n // p for n, p in zip(
            (config.data.num_frames, config.data.size, config.data.size), config.model.patch, strict=True))
    for name in finetune:
        load_config(os.path.join(root, "finetune", name), kind=FinetuneConfig)
    for name in sorted(os.listdir(os.path.join(root, "tokenizer"))):
        assert build_method(load_config(os.path.join(root, "tokenizer", name))).tokenizer.vocab_size > 1


def test_every_config_file_the_docs_name_exists():
    """A command a reader copies from the README or docs/ must not point at a config that is not shipped."""
    import re

    root = Path(__file__).resolve().parent.parent
    docs = [root / "README.md", root / "configs" / "README.md", *sorted((root / "docs").glob("*.md"))]
    named = {(doc.name, m) for doc in docs for m in re.findall(r"configs/[\w/.-]+\.yaml", doc.read_text())}
    assert len(named) > 10
    assert not {(doc, path) for doc, path in named if not (root / path).is_file()}
