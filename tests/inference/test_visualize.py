"""Visualisation helpers: colormap ends, overlay blending, boxes, contours, tiling."""

import torch

from tvau_lightning.inference.visualize import (
    colorize_heatmap,
    draw_boxes,
    draw_mask_contour,
    mask_contour,
    overlay_heatmap,
    tile_frames,
)


def test_colormap_ends_and_monotone_red():
    c = colorize_heatmap(torch.tensor([0.0, 0.5, 1.0]))
    assert c.dtype == torch.uint8 and c.shape == (3, 3)
    assert c[0, 2] > c[0, 0]          # low values are blue
    assert c[2, 0] > c[2, 2]          # high values are red
    reds = colorize_heatmap(torch.linspace(0.4, 0.85, 6))[:, 0]
    assert (reds[1:] >= reds[:-1]).all()


def test_overlay_respects_alpha_and_threshold():
    frames = torch.full((2, 4, 4, 3), 100, dtype=torch.uint8)
    heat = torch.zeros(2, 4, 4)
    heat[:, 0, 0] = 1.0
    out = overlay_heatmap(frames, heat, alpha=0.5, min_value=0.5)
    assert torch.equal(out[:, 1:, :], frames[:, 1:, :])      # below threshold: untouched
    expected = ((100 * 0.5) + colorize_heatmap(torch.tensor(1.0)).float() * 0.5).round().to(torch.uint8)
    assert torch.equal(out[0, 0, 0], expected)
    small = overlay_heatmap(frames, torch.ones(2, 2, 2), alpha=1.0)  # resized to the frames
    assert torch.equal(small[0, 3, 3], colorize_heatmap(torch.tensor(1.0)))


def test_boxes_contours_tiles():
    frame = torch.zeros(10, 12, 3, dtype=torch.uint8)
    out = draw_boxes(frame, [(2, 3, 6, 7)], color=(1, 2, 3), thickness=1)
    painted = (out.sum(-1) > 0)
    assert painted[3, 2:7].all() and painted[7, 2:7].all() and painted[3:8, 2].all() and painted[3:8, 6].all()
    assert not painted[5, 4] and painted.sum() == 2 * 5 + 2 * 3
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[1:5, 1:5] = True
    edge = mask_contour(mask)
    assert edge.sum() == 12 and not edge[2:4, 2:4].any()
    assert draw_mask_contour(torch.zeros(6, 6, 3, dtype=torch.uint8), mask)[1, 1, 1] == 220
    tiles = tile_frames(torch.ones(5, 3, 4, 3, dtype=torch.uint8), ncols=2, pad=1)
    assert tiles.shape == (3 * 4 - 1, 2 * 5 - 1, 3)
