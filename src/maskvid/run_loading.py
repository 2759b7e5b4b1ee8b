"""A pretraining run's method with its trained weights, for the commands that look inside one (``maskvid
visualize … --checkpoint``)."""

from __future__ import annotations

import os

from maskvid.errors import ConfigError


def load_run(run: str):
    """``(config, method)`` of a run directory (its latest checkpoint) or of one of its checkpoints, in eval mode."""
    from maskvid.config import load_config
    from maskvid.engine.checkpoint import latest_checkpoint, restore_model
    from maskvid.recipes import build_method

    run_dir = run if os.path.isdir(os.path.join(run, "checkpoints")) else os.path.dirname(os.path.dirname(run))
    checkpoint = latest_checkpoint(run) if run_dir == run else run
    if checkpoint is None:
        raise ConfigError("--checkpoint", f"{run}: no checkpoint in this run directory")
    config = load_config(os.path.join(run_dir, "config.yaml"))
    method = build_method(config)
    restore_model(method, os.path.join(checkpoint, "model.safetensors"))
    return config, method.eval()
