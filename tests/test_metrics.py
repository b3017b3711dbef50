import numpy as np
import pytest
import torch

from headlens.data.vqa import soft_score_table, vqa_soft_target
from headlens.metrics import accuracy, auc, soft_scores


def test_soft_scores_read_the_label_of_each_prediction():
    labels = torch.tensor([[0.0, 1.0, 0.3], [0.6, 0.0, 0.0]])
    assert soft_scores(labels, torch.tensor([1, 1])).tolist() == [1.0, 0.0]
    grid = soft_scores(labels, torch.tensor([[2, 0], [0, 2]]))
    torch.testing.assert_close(grid, torch.tensor([[0.3, 0.0], [0.6, 0.0]]))


def test_accuracy_averages_processed_or_requested_examples():
    per_example = np.array([[1.0, 0.5], [0.0, 0.5], [0.6, 0.0]])
    assert accuracy(per_example).tolist() == pytest.approx([160 / 3, 100 / 3])
    assert accuracy(per_example, divisor=4).tolist() == pytest.approx([40.0, 25.0])
    with pytest.raises(ValueError):
        accuracy(np.zeros((0, 2)))


def test_auc_is_the_trapezoid_of_fractions_times_100():
    levels = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert auc(levels, [100.0] * 10) == pytest.approx(90.0)
    acc = [70, 65, 60, 50, 45, 40, 30, 20, 10, 5]
    expected = sum((acc[i] + acc[i + 1]) / 2 / 100 * 0.1 for i in range(9)) * 100
    assert auc(levels, acc) == pytest.approx(expected)
    assert auc(levels, acc) == pytest.approx(np.trapezoid(np.array(acc) / 100, x=levels) * 100)


def test_vqa_soft_target_is_the_mean_over_leave_one_out_subsets():
    answers = ["yes"] * 3 + ["no"] * 7
    # Leaving out one of the 3 "yes": 2/3; leaving out a "no": min(1, 3/3) = 1.
    assert vqa_soft_target(answers, "yes") == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    assert vqa_soft_target(answers, "no") == pytest.approx(1.0)
    assert vqa_soft_target(["a"] + ["b"] * 9, "a") == pytest.approx(9 * (1 / 3) / 10)
    assert vqa_soft_target(answers, "maybe") == 0.0


def test_soft_score_table_is_dense():
    table = soft_score_table([{1: 1.0}, {0: 0.3, 2: 0.9}], 3)
    torch.testing.assert_close(table, torch.tensor([[0, 1, 0], [0.3, 0, 0.9]]))
