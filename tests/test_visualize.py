"""Visualisation helpers: colormap ends, overlay blending, boxes, contours, tiling."""

import torch

from tvau_lightning.visualize import (
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


def test_score_strip_columns_threshold_and_labels():
    from tvau_lightning.visualize import (
        STRIP_ABNORMAL,
        STRIP_BACKGROUND,
        STRIP_LABEL,
        STRIP_NORMAL,
        score_strip,
    )

    # 4 frames over 8 columns: two columns per frame; bars from the bottom, plot height = 20 - 3 - 1 = 16
    strip = score_strip([0.0, 0.25, 1.0, 0.75], width=8, height=20, labels=[0, 0, 1, 0], threshold=0.5)
    assert strip.shape == (20, 8, 3) and strip.dtype == torch.uint8
    bar = lambda col, colour: int((strip[:, col] == torch.tensor(colour, dtype=torch.uint8)).all(-1).sum())  # noqa: E731
    assert bar(0, STRIP_NORMAL) == 0 and bar(2, STRIP_NORMAL) == 4 and bar(3, STRIP_NORMAL) == 4
    assert bar(6, STRIP_ABNORMAL) == 12 and bar(7, STRIP_ABNORMAL) == 12
    # the dotted threshold line (row 20 - 1 - 8, columns x % 4 < 2) is drawn over the bars
    assert bar(4, STRIP_ABNORMAL) == bar(5, STRIP_ABNORMAL) == 15 and tuple(strip[11, 4].tolist()) == (150, 150, 150)
    assert bar(4, STRIP_LABEL) == 3 and bar(5, STRIP_LABEL) == 3 and bar(6, STRIP_LABEL) == 0
    assert (strip[0:3, 0] == torch.tensor(STRIP_BACKGROUND, dtype=torch.uint8)).all()
    # more frames than columns: a column shows the maximum of its frames
    many = score_strip([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], width=2, height=10)
    colour = lambda r, c: tuple(many[r, c].tolist())  # noqa: E731
    assert colour(9, 0) == colour(1, 0) == STRIP_ABNORMAL and colour(0, 0) == STRIP_BACKGROUND
    assert colour(9, 1) == STRIP_BACKGROUND


def test_strip_cursor_text_even_size_and_decoration():
    from tvau_lightning.visualize import (
        decorate_frame,
        draw_text,
        even_size,
        score_strip,
        strip_cursor,
        track_color,
    )

    strip = score_strip(torch.zeros(10), width=20, height=16)
    cursor = strip_cursor(strip, 3, 10)
    white = (cursor == 255).all(-1).all(0)
    assert white.nonzero().flatten().tolist() == [6, 7]  # frame 3 of 10 over 20 columns
    assert not torch.equal(strip_cursor(strip, 3, 10, "frame 3"), cursor)  # text drawn
    canvas = torch.zeros(20, 60, 3, dtype=torch.uint8)
    text = draw_text(canvas, "hi", (2, 2), color=(255, 0, 0), background=(0, 0, 255))
    assert (text[..., 0] > 128).any() and (text[..., 2] == 255).any() and (text[15:, 40:] == 0).all()
    odd = torch.ones(5, 7, 3, dtype=torch.uint8)
    padded = even_size(odd)
    assert padded.shape == (6, 8, 3) and torch.equal(padded[:5, :7], odd) and padded[5].sum() == 0
    frame = torch.zeros(9, 12, 3, dtype=torch.uint8)
    out = decorate_frame(frame, [(1, 1, 4, 4), (6, 2, 9, 6)], track_ids=[0, 1], strip=torch.full((4, 12, 3), 7, dtype=torch.uint8),
                         thickness=1)
    assert out.shape == (14, 12, 3) and (out[9:13] == 7).all() and out[13].sum() == 0
    assert tuple(out[1, 1].tolist()) == track_color(0) and tuple(out[2, 6].tolist()) == track_color(1)

