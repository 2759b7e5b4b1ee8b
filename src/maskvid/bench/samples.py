"""Whole augmented pretraining samples for the decoder benchmark: the same clip (path, indices) and the same random
draws through maskvid's sample path, through torchcodec's decode followed by maskvid's transform and mask, and
through VideoMAE's decord + PIL pipeline."""

from __future__ import annotations

from collections.abc import Callable

from maskvid.bench.data import videomae_sample
from maskvid.bench.loader import pretraining_dataset
from maskvid.data import VideoRecord
from maskvid.rng import sample_generator


def sample_functions(paths: list[str], torchcodec: bool) -> tuple[dict[str, Callable], dict[str, str]]:
    """name → ``f(path, indices, k)`` making clip ``k``'s sample; and the samples that cannot be made here, why."""
    # float32 samples, normalized where they are made, as VideoMAE's pipeline makes them: the same work in each
    tube, with_vectors = (pretraining_dataset(paths, name, normalize=True) for name in ("tube", "tube_vectors"))
    functions = {
        "maskvid": lambda path, indices, k: tube.clip(VideoRecord(path), indices, sample_generator(0, 0, k)),
        "maskvid_vectors": lambda path, indices, k: with_vectors.clip(VideoRecord(path), indices,
                                                                      sample_generator(0, 0, k)),
    }
    missing = {}
    if torchcodec:
        from maskvid.bench.decoders import torchcodec_decoder

        decode = torchcodec_decoder("exact")

        def torchcodec_sample(path: str, indices: list[int], k: int) -> dict:
            g = sample_generator(0, 0, k)
            frames = decode(path, indices)
            geometry = tube.transform.geometry(*frames.shape[1:3], g)
            video, _ = tube.transform(frames, g, geometry=geometry)
            return {"video": video, "mask": tube.mask(tube.grid, g)}

        functions["torchcodec_exact"] = torchcodec_sample
    try:
        import decord  # noqa: F401

        functions["videomae_decord"] = lambda path, indices, k: videomae_sample(path, indices,
                                                                                sample_generator(0, 0, k))
    except ImportError as e:
        missing["videomae_decord"] = f"ImportError: {e}"
    return functions, missing
