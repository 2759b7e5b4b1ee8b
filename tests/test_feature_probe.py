"""The closed-loop linear probe: logistic regression against scikit-free checks, cross-validation that never sees
validation, and the clip loader over a real synthesized set."""

from __future__ import annotations

import pytest
import torch

from maskvid.engine.feature_probe import ClipSet, cross_validate, embed, fit_logistic, load_clips, probe
from maskvid.errors import InputError


def separable(n: int, seed: int, noise: float = 0.3, views: int = 2):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    x = centres[y][:, None] + noise * torch.randn(n, views, 4, generator=g)
    return x, y


def test_fit_logistic_reaches_the_optimum_of_its_objective():
    x, y = separable(60, 0)
    x = x.flatten(0, 1)
    y = y.repeat_interleave(2)
    linear = fit_logistic(x, y, 3, weight_decay=1e-2)
    w = linear.weight.detach().clone().requires_grad_(True)
    b = linear.bias.detach().clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + 1e-2 * w.square().sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-3 and b.grad.abs().max() < 1e-3  # a stationary point of a convex objective
    assert (linear(x).argmax(-1) == y).float().mean() == 1.0


def test_probe_separates_classes_and_chance_stays_chance():
    train_x, train_y = separable(60, 0)
    val_x, val_y = separable(90, 1)
    report = probe(train_x, train_y, val_x, val_y, num_classes=3)
    assert report["top1"] == 1.0 and report["videos"] == 90 and report["weight_decay"] in (1e-4, 1e-3, 1e-2, 1e-1)
    shuffled = val_y[torch.randperm(90, generator=torch.Generator().manual_seed(0))]
    noise_x = torch.randn(60, 2, 4, generator=torch.Generator().manual_seed(3))
    report = probe(noise_x, train_y, torch.randn(300, 2, 4), torch.arange(300) % 3, num_classes=3)
    assert report["top1"] < 0.5  # features that carry no label: near 1/3
    assert probe(train_x, train_y, val_x, shuffled, 3)["top1"] < 0.6


def test_cross_validation_keeps_the_views_of_a_video_together():
    # each video's two views are identical and labels are random: a split that put one view in training and the
    # other in the held-out fold would score ~100% by memorizing; per-video folds stay near chance
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 1, 16, generator=g).expand(80, 2, 16).contiguous()
    y = torch.randint(0, 4, (80,), generator=g)
    assert cross_validate(x, y, 4, weight_decay=1e-4) < 0.5


def test_probe_rejects_misshapen_features():
    x, y = separable(20, 0)
    with pytest.raises(InputError, match="train_x"):
        probe(x[:, 0], y, x, y, 3)
    with pytest.raises(InputError, match="val_x"):
        probe(x, y, x[..., :2], y, 3)
    with pytest.raises(InputError, match="folds"):
        probe(x[:3], y[:3], x, y, 3)


def test_load_clips_and_embed_on_real_videos(synth_motion):
    from maskvid.data import ClipTransform, VideoDataset
    from maskvid.models import VideoViT, ViTConfig

    root = synth_motion
    dataset = VideoDataset.from_list(f"{root}/val.csv", sampling="multiview", views=[2, 1], num_frames=4, stride=2,
                                     patch=(2, 8, 8), transform=ClipTransform(size=32, crop="centre", flip=False))
    clips = load_clips(dataset, batch_size=3)
    assert clips.clips.shape == (len(dataset), 2, 3, 4, 32, 32) and clips.clips.dtype == torch.float16
    assert clips.labels.tolist() == [r.label for r in dataset.records] and clips.skipped == {}
    encoder = VideoViT(ViTConfig.preset("micro", patch=(2, 8, 8), num_frames=4, size=32)).train()
    features = embed(encoder, clips, batch_size=5)
    assert features.shape == (len(dataset), 2, 96) and encoder.training  # mode restored
    one = embed(encoder, ClipSet(clips.clips[:1], clips.labels[:1]))
    torch.testing.assert_close(one, features[:1], atol=1e-5, rtol=1e-4)  # batching does not change a video's features


def test_inputs_encoded_once_give_the_features_of_encoding_each_time():
    """A study's probes share a frozen tokenizer: its ids are made once (``encode_clips``, in ``embed``'s batches)
    and every arm's encoder reads them — the features equal those of tokenizing in ``embed`` itself."""
    from maskvid.engine.feature_probe import encode_clips
    from maskvid.models import VideoViT, ViTConfig

    torch.manual_seed(0)
    encoder = VideoViT(ViTConfig.preset("micro", num_frames=4, size=32, patch=(1, 8, 8), stem="token",
                                        vocab_size=16))
    clips = ClipSet(torch.rand(5, 2, 3, 4, 32, 32), torch.arange(5) % 3)
    calls = []

    def tokenize(video):  # (B, 3, 4, 32, 32) -> ids (B, 4, 4, 4), one per 8x8 patch of each frame
        calls.append(len(video))
        return (torch.nn.functional.avg_pool3d(video.mean(1, keepdim=True), (1, 8, 8))[:, 0] * 16).long().clamp(0, 15)

    expected = embed(encoder, clips, batch_size=4, encoder_input=tokenize)
    encoded = encode_clips(clips, tokenize, batch_size=4)
    assert encoded.shape == (10, 4, 4, 4) and calls == [4, 4, 2, 4, 4, 2]
    assert torch.equal(embed(encoder, clips, batch_size=4, encoded=encoded), expected)
    assert calls == [4, 4, 2, 4, 4, 2]  # read, not made again
