import numpy as np
import pytest
import torch
from PIL import Image

from headlens.explain import pointing_game
from headlens.adapters.lxmert import LXMERT
from headlens.adapters.visual_bert import VISUAL_BERT
from headlens.pictures import write_pictures
from headlens.viz.figures import head_grid, pruning_row
from headlens.viz.images import box_mask, masked_image, min_max, overlay
from headlens.viz.tokens import latex_document, percent_scores, token_html

BOXES = np.array([[0, 0, 32, 32], [16, 16, 48, 48], [40, 0, 64, 24]], dtype=float)


def test_box_mask_normalises_keeps_the_maximum_on_overlaps_and_zero_outside():
    mask = box_mask(BOXES, np.array([2.0, 4.0, 3.0]), 64, 64)
    assert mask[5, 5] == 0.0  # lowest score → 0 after min–max
    assert mask[20, 20] == 1.0  # overlap of boxes 0 and 1: the maximum
    assert mask[10, 50] == 0.5
    assert mask[60, 5] == 0.0  # in no box
    assert (min_max(np.array([3.0, 3.0])) == 0).all()


def test_token_scores_follow_the_original_latex_convention():
    assert percent_scores([0.0, 0.005, 1.0, 0.5]) == [0, 0, 100, 50]
    document = latex_document(["[CLS]", "play", "##ing", "50%", "?"], [0.0, 1.0, 0.5, 0.25, 0.001])
    assert "\\colorbox{red!100}{\\strut play}\\colorbox{red!50}{\\strut ing}" in document  # ## glued, no space
    assert "\\colorbox{red!25}{\\strut 50\\%}" in document and "\\colorbox{red!0}{\\strut ?}" in document
    assert document.startswith("\\documentclass") and document.rstrip().endswith("\\end{document}")
    page = token_html(["a", "<b>"], [1.0, 0.0])
    assert "&lt;b&gt;" in page and "rgba(220, 30, 30, 1.00)" in page


def test_written_pictures_read_back_with_the_most_relevant_box_brightest(tmp_path):
    image = np.full((64, 64, 3), 200, dtype=np.uint8)
    levels = [0.0, 0.4]
    box_scores = np.array([[0.1, 0.2, 0.9], [0.5, 0.1, 0.2]])
    token_scores = np.array([[0.0, 1.0, 0.3], [0.2, 0.1, 0.0]])
    written = write_pictures(
        tmp_path, LXMERT.original_pictures, "img7", image, BOXES, ["[CLS]", "what", "?"], levels, token_scores, box_scores,
        ["yes", "no"], "what?", np.random.default_rng(0).normal(size=(3, 4)), ["a.0.self", "b.0.self", "c.1.l2v"],
    )  # fmt: skip
    names = {p.name for p in tmp_path.iterdir()}
    assert {"img7_orig.jpg", "img7_prune_0.jpg", "img7_prune_40.jpg", "img7_prune_0.tex", "img7_prune_40.tex",
            "img7_prune_0_overlay.png", "tokens.html", "tokens_0.png", "figure.png", "heads.png"} <= names  # fmt: skip
    for level, scores in zip((0, 40), box_scores):
        pixels = np.asarray(Image.open(tmp_path / f"img7_prune_{level}.jpg").convert("L"), dtype=float)
        assert pixels.shape == (64, 64)
        brightness = [pixels[int(b[1]) + 2 : int(b[3]) - 2, int(b[0]) + 2 : int(b[2]) - 2].mean() for b in BOXES]
        order = np.argsort(brightness)
        assert order[-1] == np.argmax(scores)
    assert "\\colorbox{red!100}{\\strut what}" in (tmp_path / "img7_prune_0.tex").read_text()
    assert Image.open(written["figure"]).size[0] > Image.open(written["figure"]).size[1]
    vb = write_pictures(
        tmp_path / "vb", VISUAL_BERT.original_pictures, "img7", image, BOXES, ["a"], [0.6], token_scores[:1, :1], box_scores[:1],
        ["no"], "q", np.zeros((2, 2)), ["enc.0.self", "enc.1.self"],
    )  # fmt: skip
    assert vb["jpg_60"].name == "img7_60.jpg" and not (tmp_path / "vb" / "img7_orig.jpg").exists()


def test_overlay_outlines_the_best_box_in_black_unless_scores_are_flat():
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    out = overlay(image, BOXES, np.array([0.0, 0.0, 1.0]))
    assert (out[0, 50] == 0).all() and (out[0, 5] == 255).all()  # top edges of box 2 (best) and box 0
    flat = overlay(image, BOXES, np.zeros(3))
    assert (flat[0, 50] == 255).all()
    assert (masked_image(image, np.zeros((64, 64))) == 0).all()


def test_figures_carry_labels_and_answers():
    figure = head_grid(np.arange(6.0).reshape(3, 2) - 2, ["lang.0.self", "x.0.l2v", "vis.0.self"], "t")
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["lang.0.self", "x.0.l2v", "vis.0.self"]
    row = pruning_row(np.zeros((64, 64, 3), np.uint8), BOXES, ["a", "b"], [0.0, 0.9], np.ones((2, 3)),
                      np.ones((2, 2)), ["yes", "blue"])  # fmt: skip
    titles = [ax.get_title() for ax in row.axes if ax.get_title()]
    assert titles == ["original", "0% pruned: yes", "90% pruned: blue"]
    assert len(row.axes) == 6  # three image panels, a token strip under each pruned panel, the colour bar
    assert row.axes[-1].get_ylabel() == "box relevance" and row.axes[-1].get_ylim() == (0.0, 1.0)
    image_only = pruning_row(np.zeros((64, 64, 3), np.uint8), BOXES, [], [0.0, 0.9], np.array([[0.1, 0.4, 0.2], [0.05, 0.1, 0.0]]),
                             np.zeros((2, 0)), ["3", "8"])  # fmt: skip
    assert len(image_only.axes) == 4  # an image-only model (ViT) gets no empty token row
    assert image_only.axes[-1].get_ylim() == pytest.approx((0.0, 0.4))  # one scale: the largest score of any level


def test_overlays_share_one_sequential_scale_with_opacity_rising_with_relevance():
    from matplotlib import colormaps

    image = np.full((64, 64, 3), 200, dtype=np.uint8)
    scores = np.array([0.0, 0.5, 1.0])
    out = overlay(image, BOXES, scores, vmax=1.0).astype(float)
    assert (out[60, 60] == 200).all()  # in no box: the image as it is
    assert (out[5, 5] == 200).all()  # a box of relevance 0: clear, not a colour
    top = 0.15 * 200 + 0.85 * np.asarray(colormaps["YlOrRd"](1.0)[:3]) * 255
    np.testing.assert_allclose(out[10, 50], top, atol=1)  # the most relevant box: the map's top colour, 85 % opaque
    half = np.asarray(colormaps["YlOrRd"](0.5)[:3]) * 255
    np.testing.assert_allclose(out[40, 30], (1 - 0.425) * 200 + 0.425 * half, atol=1)
    faint = overlay(image, BOXES, scores / 10, vmax=1.0).astype(float)  # a tenth of the relevance, same scale
    assert np.abs(faint[10, 50] - 200).sum() < np.abs(out[10, 50] - 200).sum() / 5
    alone = overlay(image, BOXES, scores / 10).astype(float)  # its own scale: as strong as the first
    np.testing.assert_allclose(alone[10, 50], out[10, 50], atol=1)


def test_pointing_game_hits_shares_and_flat_maps():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.0, 0.0, 0.0]])
    target = torch.tensor([[False, True, False], [False, True, True], [True, True, True]])
    hit, share = pointing_game(scores, target)
    assert hit == pytest.approx(100 / 3)  # example 0 hits; 1 misses; 2 is flat: a miss
    assert share == pytest.approx(100 * (0.7 + 0.5 + 0.0) / 3)
    valid = torch.tensor([[True, False, True], [True, True, True], [True, True, True]])
    assert pointing_game(scores, target, valid)[0] == 0.0  # example 0's best valid box is box 2


def test_curve_figure_colours_by_method_styles_by_order_with_one_legend_outside():
    from types import SimpleNamespace

    from headlens.viz.curves import method_colours, plot_curves

    curves = [SimpleNamespace(model="m", unit="head", protocol=p, method=m, order=o, levels=[0.0, 0.5],
                              accuracy=[50.0, 40.0 if o == "negative" else 20.0], auc=20.0)
              for p in ("per_example", "global") for m in ("random", "grad") for o in ("positive", "negative")]  # fmt: skip
    figure = plot_curves(curves)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == 2 and all(ax.get_legend() is None for ax in panels)
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["grad", "random", "positive order", "negative order"]
    colours = method_colours(["random", "grad"])
    for line, (method, order) in zip(panels[0].get_lines(), [("grad", "negative"), ("grad", "positive"),
                                                              ("random", "negative"), ("random", "positive")]):  # fmt: skip
        assert line.get_color() == colours[method] and line.get_linestyle() == ("--" if order == "positive" else "-")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= max(ax.get_window_extent(renderer).x1 for ax in panels)
