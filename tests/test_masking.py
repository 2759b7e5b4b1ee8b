"""Property tests for every mask strategy: shape, dtype, counts, determinism, and each family's geometry."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskvid import masking
from maskvid.errors import ConfigError, InputError
from maskvid.masking import masked_count, rectangle_for_ratio

SETTINGS = settings(max_examples=40, deadline=None)
ratios = st.floats(0.05, 0.95)
seeds = st.integers(0, 2**31 - 1)


def grids(max_t=8, max_side=16):
    return st.tuples(st.integers(1, max_t), st.integers(1, max_side), st.integers(1, max_side)).filter(
        lambda g: g[1] * g[2] >= 2
    )


def draw(name, grid, seed, **options):
    return masking.build(name, **options)(grid, generator=torch.Generator().manual_seed(seed))


def is_one_rectangle(plane: torch.Tensor) -> bool:
    rows, cols = plane.any(1).nonzero().flatten(), plane.any(0).nonzero().flatten()
    if rows.numel() == 0:
        return False
    box = plane[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return bool(box.all()) and int(box.numel()) == int(plane.sum())


def test_registry_lists_every_strategy_of_the_issue():
    assert set(masking.available()) == {
        "random", "tube", "cube", "block3d", "frame", "smm", "mgm",
        "running_cell", "running_uniform", "running_random", "running_block",
    }


@pytest.mark.parametrize("name", masking.available())
@given(grid=grids(), seed=seeds)
@SETTINGS
def test_shape_dtype_and_determinism(name, grid, seed):
    options = {"ratio": 0.5} if name == "running_cell" else {}
    if name == "running_cell":
        grid = (grid[0], 2 * max(1, grid[1] // 2), 2 * max(1, grid[2] // 2))
    if name == "frame":
        grid = (max(grid[0], 2), *grid[1:])
    first, second = draw(name, grid, seed, **options), draw(name, grid, seed, **options)
    assert first.shape == grid and first.dtype == torch.bool
    assert torch.equal(first, second)
    assert 0 < int(first.sum()) < first.numel() or name == "frame" and grid[0] == 1


@given(grid=grids(), ratio=ratios, seed=seeds)
@SETTINGS
def test_random_masks_exactly_round_ratio_n(grid, ratio, seed):
    mask = draw("random", grid, seed, ratio=ratio)
    n = mask.numel()
    assert int(mask.sum()) == masked_count(ratio, n) == min(max(round(ratio * n), 1), n - 1)


@pytest.mark.parametrize("name", ["tube", "cube"])
@given(grid=grids(), ratio=ratios, seed=seeds)
@SETTINGS
def test_tube_and_cube_are_constant_over_time_with_exact_slice_counts(name, grid, ratio, seed):
    mask = draw(name, grid, seed, ratio=ratio)
    assert torch.equal(mask, mask[:1].expand_as(mask))
    assert int(mask[0].sum()) == masked_count(ratio, grid[1] * grid[2])


@given(grid=grids().filter(lambda g: g[0] >= 2), ratio=ratios, seed=seeds)
@SETTINGS
def test_frame_masks_whole_slices(grid, ratio, seed):
    mask = draw("frame", grid, seed, ratio=ratio)
    per_slice = mask.flatten(1)
    assert bool((per_slice.all(1) | ~per_slice.any(1)).all())
    assert int(per_slice.all(1).sum()) == masked_count(ratio, grid[0])


@pytest.mark.parametrize("name", ["smm", "mgm"])
@given(grid=grids(), ratio=ratios, seed=seeds, jitter=st.integers(0, 3), motion_seed=seeds)
@SETTINGS
def test_dense_moving_masks_are_one_rectangle_per_slice_with_a_fixed_clip_count(
    name, grid, ratio, seed, jitter, motion_seed
):
    motion = torch.rand(grid[0], 2 * grid[1], 2 * grid[2], generator=torch.Generator().manual_seed(motion_seed))
    gen = masking.build(name, ratio=ratio, jitter=jitter)
    mask = gen(grid, generator=torch.Generator().manual_seed(seed), motion=motion)
    h0, w0 = rectangle_for_ratio(ratio, grid[1], grid[2])
    assert int(mask.sum()) == grid[0] * h0 * w0
    assert all(is_one_rectangle(plane) for plane in mask)


@given(grid=grids(), ratio=ratios, seed=seeds)
@SETTINGS
def test_sparse_moving_masks_keep_the_slice_count(grid, ratio, seed):
    motion = torch.rand(grid[0], grid[1], grid[2], generator=torch.Generator().manual_seed(seed))
    for name in ("smm", "mgm"):
        gen = masking.build(name, ratio=ratio, variant="sparse")
        mask = gen(grid, generator=torch.Generator().manual_seed(seed), motion=motion)
        assert mask.flatten(1).sum(1).tolist() == [masked_count(ratio, grid[1] * grid[2])] * grid[0]


def test_sparse_mgm_takes_the_fastest_tokens_of_each_slice():
    motion = torch.zeros(2, 4, 4)
    motion[0, 0, :2] = 5.0
    motion[1, 3, 2:] = 7.0
    mask = masking.build("mgm", ratio=2 / 16, variant="sparse")((2, 4, 4), motion=motion)
    assert mask[0, 0, :2].all() and mask[1, 3, 2:].all() and int(mask.sum()) == 4


def test_mgm_centres_on_the_motion_peak_and_holds_it_through_slices_without_vectors():
    motion = torch.zeros(4, 28, 28)
    motion[0, 2, 3] = 1.0  # token (1, 1) of a 14×14 grid
    motion[1] = float("nan")  # an I-frame pair: keep the previous centre
    motion[2, 25, 25] = 3.0  # token (12, 12)
    motion[3] = 0.0  # a static pair: keep the previous centre too
    mask = masking.build("mgm", ratio=0.1, jitter=0)((4, 14, 14), torch.Generator().manual_seed(0), motion)
    assert mask[0, 1, 1] and mask[1, 1, 1] and not mask[0, 12, 12]
    assert mask[2, 12, 12] and mask[3, 12, 12] and not mask[2, 1, 1]


def test_mgm_without_motion_falls_back_to_smm_with_a_warning(caplog):
    gen = masking.build("mgm", ratio=0.6)
    with caplog.at_level(logging.WARNING, logger="maskvid.masking.moving"):
        fallback = gen((4, 8, 8), torch.Generator().manual_seed(3), torch.full((4, 8, 8), float("nan")))
        gen((4, 8, 8), torch.Generator().manual_seed(3), None)
    smm = masking.build("smm", ratio=0.6)((4, 8, 8), torch.Generator().manual_seed(3))
    assert torch.equal(fallback, smm)
    assert sum("falls back" in r.message or "smm instead" in r.message for r in caplog.records) == 1
    assert gen.fallbacks == 2


def running_grids():
    cells = st.sampled_from([(2, 2), (1, 3), (2, 3)])
    return st.tuples(st.integers(1, 12), st.integers(1, 7), st.integers(1, 7), cells)


@given(dims=running_grids(), seed=seeds, data=st.data())
@settings(max_examples=60, deadline=None)
def test_running_cell_counts_cycling_and_spatial_modes(dims, seed, data):
    t, rows, cols, cell = dims
    size = cell[0] * cell[1]
    k = data.draw(st.integers(1, size - 1))
    spatial = data.draw(st.sampled_from(["repeat", "random"]))
    temporal = data.draw(st.sampled_from(["fixed", "shuffle"]))
    grid = (t, rows * cell[0], cols * cell[1])
    mask = draw("running_cell", grid, seed, ratio=k / size, cell=cell, spatial=spatial, temporal=temporal)
    cells = mask.view(t, rows, cell[0], cols, cell[1]).permute(0, 1, 3, 2, 4).reshape(t, rows, cols, size)
    assert bool((cells.sum(-1) == k).all())  # every cell, every slice: exactly k masked
    for first in range(t - size + 1):  # any full period: each position masked exactly k times
        assert bool((mask[first : first + size].sum(0) == k).all())
    if spatial == "repeat":
        assert bool((cells == cells[:, :1, :1]).all())
    if temporal == "fixed" and t > 1:  # state s → s+1: the cell's queue rotates by one place
        assert torch.equal(cells[1], torch.roll(cells[0], -1, dims=-1))


def test_running_cell_states_follow_mar_for_2x2_at_half():
    mask = masking.build("running_cell", ratio=0.5, temporal="fixed", start=0)((4, 2, 2))
    states = [plane.int().tolist() for plane in mask]
    assert states == [[[1, 1], [0, 0]], [[1, 0], [0, 1]], [[0, 0], [1, 1]], [[0, 1], [1, 0]]]  # A, B, C, D
    again = masking.build("running_cell", ratio=0.5, temporal="fixed", start=0)((4, 2, 2))
    assert torch.equal(mask, again)  # a fixed start does not depend on the generator


@pytest.mark.parametrize("name", ["running_uniform", "running_random", "running_block"])
@given(grid=grids(), ratio=ratios, seed=seeds)
@SETTINGS
def test_running_whole_slice_patterns_rotate_with_a_fixed_count(name, grid, ratio, seed):
    mask = draw(name, grid, seed, ratio=ratio)
    counts = mask.flatten(1).sum(1)
    assert bool((counts == counts[0]).all())
    for i in range(1, grid[0]):
        assert torch.equal(mask[i].flatten(), torch.roll(mask[i - 1].flatten(), -1))
    if name != "running_block":
        assert int(counts[0]) == masked_count(ratio, grid[1] * grid[2])


def test_running_uniform_spreads_evenly():
    mask = masking.build("running_uniform", ratio=0.25)((1, 4, 8))
    assert mask.flatten().nonzero().flatten().tolist() == [3, 7, 11, 15, 19, 23, 27, 31]


@pytest.mark.parametrize(
    "frames, side, table",
    [(5, 16, [11.9, 14.5, 17.0, 19.4, 21.7]), (10, 32, [9.3, 11.4, 13.4, 15.4, 17.2])],
)
def test_block3d_expected_ratio_reproduces_vimpac_table_2(frames, side, table):
    got = [100 * masking.expected_block3d_ratio((frames, side, side), k) for k in range(4, 9)]
    assert got == pytest.approx(table, abs=0.15)
    assert masking.blocks_for_ratio((5, 16, 16), 0.15) == 5  # VIMPAC's bold choice for 128² × 5 frames


def test_block3d_mean_ratio_matches_its_expectation_and_blocks_stay_in_bounds():
    grid = (8, 14, 14)
    gen = masking.build("block3d", ratio=0.4)
    g = torch.Generator().manual_seed(0)
    mean = torch.stack([gen(grid, g).float().mean() for _ in range(400)]).mean()
    expected = masking.expected_block3d_ratio(grid, masking.blocks_for_ratio(grid, 0.4))
    assert float(mean) == pytest.approx(expected, abs=0.01)
    assert abs(expected - 0.4) < 0.03
    single = masking.build("block3d", blocks=1)(grid, g)
    t, h, w = (single.nonzero().amax(0) - single.nonzero().amin(0) + 1).tolist()
    assert t <= 5 and h <= 7 and w <= 7 and int(single.sum()) == t * h * w


def test_cube_blocks_are_compact():
    mask = masking.build("cube", ratio=0.4)((2, 14, 14), torch.Generator().manual_seed(1))
    plane = mask[0].float()
    neighbours = sum(torch.roll(plane, s, d) for s in (-1, 1) for d in (0, 1))
    assert float(neighbours[mask[0]].mean()) > 2.5  # blocks, not scattered tokens (random gives ~1.6)


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("nope", {}, "mask.strategy"),
        ("tube", {"ratio": 1.0}, "mask.ratio"),
        ("tube", {"ratio": 0.0}, "mask.ratio"),
        ("tube", {"speed": 3}, "mask.speed"),
        ("running_cell", {"ratio": 0.6}, "mask.ratio"),
        ("running_cell", {"spatial": "diagonal"}, "mask.spatial"),
        ("running_cell", {"start": 4}, "mask.start"),
        ("mgm", {"source": "radar"}, "mask.source"),
        ("mgm", {"variant": "fuzzy"}, "mask.variant"),
        ("block3d", {"blocks": 0}, "mask.blocks"),
    ],
)
def test_bad_options_are_refused_naming_the_key(name, options, key):
    with pytest.raises(ConfigError) as error:
        masking.build(name, **options)
    assert error.value.key == key


@pytest.mark.parametrize(
    "name, grid", [("running_cell", (8, 7, 14)), ("frame", (1, 14, 14)), ("tube", (8, 1, 1)), ("random", (1, 1, 1))]
)
def test_grids_a_strategy_cannot_serve_are_refused(name, grid):
    with pytest.raises(ConfigError, match=r"grid|cell"):
        masking.build(name)(grid)


def test_motion_of_the_wrong_shape_is_refused():
    with pytest.raises(InputError, match="motion"):
        masking.build("mgm")((8, 14, 14), motion=torch.zeros(4, 14, 14))
