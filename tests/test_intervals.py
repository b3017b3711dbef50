import json

import numpy as np
import pytest

import headlens
from headlens.errors import InputError
from headlens.intervals import curve_intervals, paired_difference, resample_counts, trapezoid_weights, with_interval
from headlens.metrics import accuracy, auc
from headlens.results import write_results

from conftest import synthetic, tiny_adapter

LEVELS = [0.0, 0.5, 0.9]


def test_counts_are_seeded_resamples_of_every_example():
    counts = resample_counts(7, 50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all()
    assert np.array_equal(counts, resample_counts(7, 50, seed=3))
    assert not np.array_equal(counts, resample_counts(7, 50, seed=4))
    with pytest.raises(InputError, match="at least one example and one resample, got 0 and 50"):
        resample_counts(0, 50)


def test_trapezoid_weights_give_the_auc_of_metrics():
    acc = np.array([90.0, 70.0, 20.0])
    assert trapezoid_weights(LEVELS) @ acc == pytest.approx(auc(LEVELS, acc))


def test_intervals_equal_a_loop_over_resampled_examples():
    rng = np.random.default_rng(0)
    soft = rng.random((2, 30, 3)).round(1)
    found = curve_intervals(soft, LEVELS, resamples=200, seed=5)
    counts = resample_counts(30, 200, seed=5).astype(int)
    for curve in range(2):
        accs, aucs = [], []
        for row in counts:
            chosen = np.repeat(np.arange(30), row)
            accs.append(accuracy(soft[curve, chosen]))
            aucs.append(auc(LEVELS, accs[-1]))
        low, high = np.percentile(accs, [2.5, 97.5], axis=0)
        np.testing.assert_allclose(found.accuracy_low[curve], low)
        np.testing.assert_allclose(found.accuracy_high[curve], high)
        assert found.auc_low[curve] == pytest.approx(np.percentile(aucs, 2.5))
        assert found.auc_high[curve] == pytest.approx(np.percentile(aucs, 97.5))


def test_bernoulli_accuracy_interval_matches_the_normal_approximation():
    p, n = 0.7, 400
    soft = (np.random.default_rng(1).random((1, n, 1)) < p).astype(float).repeat(2, axis=2)
    found = curve_intervals(soft, [0.0, 0.5], resamples=2000)
    mean = soft[0, :, 0].mean()
    normal = 2 * 1.96 * np.sqrt(mean * (1 - mean) / n) * 100
    width = found.accuracy_high[0, 0] - found.accuracy_low[0, 0]
    assert width == pytest.approx(normal, rel=0.1)
    assert found.accuracy_low[0, 0] < 100 * mean < found.accuracy_high[0, 0]


def test_bernoulli_intervals_cover_the_true_accuracy_about_95_percent_of_the_time():
    p, n, trials = 0.3, 200, 200
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(trials):
        soft = (rng.random((1, n, 2)) < p).astype(float)
        found = curve_intervals(soft, [0.0, 0.5], resamples=400, seed=trial)
        covered += found.accuracy_low[0, 0] <= 100 * p <= found.accuracy_high[0, 0]
    assert 0.90 <= covered / trials <= 0.99


def test_paired_difference_of_identical_curves_is_zero_with_zero_width():
    soft = np.random.default_rng(3).random((50, 3))
    same = paired_difference(soft, soft.copy(), LEVELS)
    assert (same.value, same.low, same.high, same.clear) == (0.0, 0.0, 0.0, False)
    shifted = paired_difference(np.ones((50, 3)), np.zeros((2, 50, 3)), LEVELS)  # seeds averaged
    assert (shifted.value, shifted.low, shifted.high, shifted.clear) == pytest.approx((90.0, 90.0, 90.0, True))
    noisy = paired_difference(soft, np.random.default_rng(4).random((50, 3)), LEVELS)
    assert noisy.low < noisy.value < noisy.high
    with pytest.raises(InputError, match=r"same examples and levels, got \(50, 3\) and \(49, 3\)"):
        paired_difference(soft, soft[:49], LEVELS)


def test_with_interval_formats_a_value_and_its_interval():
    assert with_interval(62.54, 60.71, 64.33) == "62.5 [60.7, 64.3]"
    assert with_interval(62.54, None, None) == "62.5"


def test_sweep_curves_carry_intervals_and_a_random_band(tmp_path):
    adapter = tiny_adapter("visual_bert")
    examples, scoring = synthetic(adapter, 6, labels="model"), synthetic(adapter, 4, seed=1, labels="model")
    options = dict(methods=["grad", "random"], units=["head"], protocols=["per_example", "global"],
                   batch_size=4, progress=False)  # fmt: skip
    result = headlens.sweep(adapter, examples, scoring, random_seeds=3, **options)
    assert [c.label for c in result.curves] == [
        f"{m}/head/{o}/{p}" for p in ("per_example", "global") for m in ("grad", "random") for o in ("positive", "negative")
    ]
    assert result.soft.shape == (8, 6, len(result.levels))
    for curve in result.curves:
        assert curve.auc_low <= curve.auc <= curve.auc_high
        assert all(lo <= a <= hi for lo, a, hi in zip(curve.accuracy_low, curve.accuracy, curve.accuracy_high))
        assert (curve.seed_auc is None) == (curve.method != "random")
    second = headlens.sweep(adapter, examples, scoring, seed=1, bootstrap=0, **options)
    for protocol in ("per_example", "global"):
        band = result.curve("random", "head", "negative", protocol)
        assert band.seed_auc[0] == band.auc
        assert band.seed_auc[1] == pytest.approx(second.curve("random", "head", "negative", protocol).auc)
        assert all(lo <= a <= hi for lo, a, hi in zip(band.band_low, band.accuracy, band.band_high))
        assert result.replicas[band.label].shape == (3, 6, len(result.levels))
    assert second.curves[0].auc_low is None and second.replicas == {}
    write_results(result, tmp_path, plot=False)
    written = json.loads((tmp_path / "results.json").read_text())["runs"][0]["curves"][1]
    assert written["auc_low"] == result.curves[1].auc_low and written["seed_auc"] is None


def test_random_seeds_and_bootstrap_are_checked():
    with pytest.raises(InputError, match="random_seeds must be at least 1, got 0"):
        headlens.SweepOptions(random_seeds=0)
    with pytest.raises(InputError, match="bootstrap must be 0 .no intervals. or a number of resamples, got -1"):
        headlens.SweepOptions(bootstrap=-1)


def test_best_method_names_the_highest_auc_and_tests_it_against_random_and_the_others():
    from types import SimpleNamespace

    from headlens.intervals import best_method
    from headlens.sweep import Curve

    rng = np.random.default_rng(5)
    chance = (rng.random((3, 200, 3)) < 0.5).astype(float)  # three random seeds
    good = np.maximum(chance[0], (rng.random((200, 3)) < 0.6))  # better than the first seed everywhere
    close = good.copy()
    close[:3, 1] = 0  # a hair below good
    soft = np.stack([chance[0], good, close, chance[1]])

    def curve(method, values, protocol="global", seeds=None):
        acc = accuracy(values)
        return Curve("m", protocol, method, "head", "negative", LEVELS, [0, 1, 2], acc.tolist(), auc(LEVELS, acc), 200,
                     seed_auc=seeds)  # fmt: skip

    seed_auc = [auc(LEVELS, accuracy(s)) for s in chance]
    curves = [curve("random", chance[0], seeds=seed_auc), curve("taylor", good), curve("lrp", close),
              curve("grad", chance[1], "per_example")]  # fmt: skip
    result = SimpleNamespace(curves=curves, soft=soft, levels=LEVELS, replicas={curves[0].label: chance})
    verdict = best_method(result, resamples=500)
    assert verdict.method == "taylor" and verdict.tied == ["lrp"] and verdict.random_seeds == 3
    assert verdict.random_auc == pytest.approx(np.mean(seed_auc))
    assert verdict.over_random.value == pytest.approx(curves[1].auc - np.mean(seed_auc)) and verdict.over_random.low > 0
    assert "**taylor**" in verdict.sentence("x") and "it beats random" in verdict.sentence("x")
    same = SimpleNamespace(curves=[curves[0], curve("grad", chance[0])], soft=soft[[0, 0]], levels=LEVELS, replicas={})
    assert "not distinguishable from random" in best_method(same, resamples=200).sentence("x")
    assert best_method(SimpleNamespace(curves=curves[1:3], soft=soft[1:3], levels=LEVELS, replicas={})) is None
