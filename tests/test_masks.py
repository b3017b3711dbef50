import pytest
import torch

from headlens.errors import InputError
from headlens.masks import LEVELS, head_masks, keep_masks, prune_ranks, pruned_counts, unit_counts


def test_visual_bert_counts_match_the_original_tables():
    assert pruned_counts(144, LEVELS, "prune_floor") == [0, 14, 28, 43, 57, 72, 86, 100, 115, 129]
    assert pruned_counts(12, LEVELS, "prune_floor") == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_lxmert_counts_match_the_original_tables():
    assert pruned_counts(384, LEVELS, "keep_floor") == [0, 39, 77, 116, 154, 192, 231, 269, 308, 346]
    assert pruned_counts(32, LEVELS, "keep_floor") == [0, 4, 7, 10, 13, 16, 20, 23, 26, 29]


def test_small_counts_keep_the_float_error_of_the_original():
    # (1 - 0.8) * 40 == 7.999…: 33 pruned at 80 %; (1 - 0.9) * 40 == 3.999…: 37 at 90 %.
    assert pruned_counts(40, LEVELS, "keep_floor")[8:] == [33, 37]
    # (1 - 0.9) * 10 == 0.999…: every one of 10 sites pruned at 90 %.
    assert pruned_counts(10, LEVELS, "keep_floor")[9] == 10
    assert pruned_counts(10, LEVELS, "prune_floor") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="unknown count rule"):
        pruned_counts(10, LEVELS, "round")


def test_positive_prunes_highest_first_negative_most_negative_first():
    scores = torch.tensor([[0.5, -2.0, 3.0, -0.1, 1.0]])
    assert prune_ranks(scores, "positive").tolist() == [[2, 4, 0, 3, 1]]
    assert prune_ranks(scores, "negative").tolist() == [[2, 0, 4, 1, 3]]  # signed: −2 first, not |−0.1|
    keep = keep_masks(scores, [0, 1, 2], "negative")
    assert keep[0].tolist() == [
        [True, True, True, True, True],
        [True, False, True, True, True],
        [True, False, True, False, True],
    ]


def test_ties_go_to_the_lower_index_first_in_both_orders():
    scores = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    assert prune_ranks(scores, "positive").tolist() == [[0, 1, 3, 2]]
    assert prune_ranks(scores, "negative").tolist() == [[1, 2, 0, 3]]


def test_non_finite_scores_and_unknown_order_are_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        prune_ranks(torch.tensor([[0.0, float("nan")]]), "positive")
    with pytest.raises(ValueError, match="unknown order 'up'"):
        prune_ranks(torch.zeros(1, 2), "up")


def test_head_masks_prune_the_counted_heads_per_example_and_grow_with_level():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 10, 4, generator=generator)  # 3 examples, 10 sites × 4 heads
    masks = head_masks(scores, LEVELS, "positive", "head", "keep_floor")
    assert masks.shape == (3, 10, 10, 4)
    counts = unit_counts(10, 4, LEVELS, "head", "keep_floor")
    assert (1 - masks).sum(dim=(-2, -1)).tolist() == [counts] * 3
    assert (masks[:, 1:] <= masks[:, :-1]).all()  # once pruned, pruned at every later level
    # Positive: every pruned head scores at least as high as every kept one, per example.
    level = 4
    for b in range(3):
        pruned, kept = scores[b][masks[b, level] == 0], scores[b][masks[b, level] == 1]
        assert pruned.min() >= kept.max()
    # Per example: different scores, different masks.
    assert not torch.equal(masks[0], masks[1])


def test_layer_masks_prune_whole_sites_by_mean_head_score():
    scores = torch.tensor([[[1.0, 1.0], [5.0, -4.0], [0.0, 3.0]]])  # site means 1, 0.5, 1.5
    masks = head_masks(scores, [0.0, 0.4, 0.7], "positive", "layer", "prune_floor")
    assert masks[0, 1].tolist() == [[1, 1], [1, 1], [0, 0]]  # int(0.4·3) = 1: the top site
    assert masks[0, 2].tolist() == [[0, 0], [1, 1], [0, 0]]  # int(0.7·3) = 2
    negative = head_masks(scores, [0.4], "negative", "layer", "prune_floor")
    assert negative[0, 0].tolist() == [[1, 1], [0, 0], [1, 1]]


def test_kv_group_masks_prune_whole_groups_by_the_sum_of_their_query_heads():
    # 2 sites × 4 query heads, 2 key/value heads: groups are heads {0, 1} and {2, 3}.
    scores = torch.tensor([[[1.0, 1.0, 3.0, -2.5], [0.0, 0.4, -1.0, 5.0]]])  # group sums 2, 0.5 | 0.4, 4
    masks = head_masks(scores, [0.0, 0.25, 0.5], "positive", "kv_group", "prune_floor", kv_heads=2)
    assert unit_counts(2, 4, [0.0, 0.25, 0.5], "kv_group", "prune_floor", 2) == [0, 1, 2]
    assert masks[0, 1].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]  # the group summing to 4 first
    assert masks[0, 2].tolist() == [[0, 0, 1, 1], [1, 1, 0, 0]]
    negative = head_masks(scores, [0.25], "negative", "kv_group", "prune_floor", kv_heads=2)
    assert negative[0, 0].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    # without grouped key/value heads a group is a head
    assert torch.equal(head_masks(scores, LEVELS, "positive", "kv_group", "keep_floor"),
                       head_masks(scores, LEVELS, "positive", "head", "keep_floor"))  # fmt: skip
    with pytest.raises(InputError, match="unit kv_group: this model has one key/value head per site \\(multi-query "
                                         "attention\\), so a key/value group is the whole site of 4 query heads; "
                                         "use unit=layer"):  # fmt: skip
        head_masks(scores, [0.0], "positive", "kv_group", "prune_floor", kv_heads=1)
    with pytest.raises(ValueError, match="4 query heads cannot share 3 key/value heads evenly"):
        head_masks(scores, [0.0], "positive", "kv_group", "prune_floor", kv_heads=3)
    with pytest.raises(ValueError, match="unknown unit 'group'; valid: head, layer, kv_group"):
        unit_counts(2, 4, [0.0], "group", "prune_floor")
