import json

import numpy as np
import pytest
import torch

import headlens
from headlens.adapters import adapter_for
from headlens.edits import gates
from headlens.masks import LEVELS, pruned_count
from headlens.results import write_results

from conftest import hooks_left, synthetic, tiny_adapter
from helpers import alone

F64 = torch.float64


def data(adapter, size, seed=0):
    return synthetic(adapter, size, seed=seed, labels="model")


def reference_mask(scores, order, unit, level, rule):
    """The pruning mask of one example at one level, by sorting a Python list."""
    sites, heads = scores.shape
    if unit == "head":
        units = [(float(scores[s, h]), s * heads + h) for s in range(sites) for h in range(heads)]
    else:
        units = [(float(scores[s].mean()), s) for s in range(sites)]
    ranked = sorted(units, key=lambda u: (-u[0] if order == "positive" else u[0], u[1]))
    mask = torch.ones(sites * heads if unit == "head" else sites, dtype=F64)
    for _, index in ranked[: pruned_count(len(units), level, rule)]:
        mask[index] = 0
    return mask.reshape(sites, heads) if unit == "head" else mask[:, None].expand(sites, heads)


def predict(adapter, batch, mask):
    with torch.no_grad(), gates(adapter, mask[None]):
        return int(adapter.logits(batch.inputs).argmax(-1))


def test_per_example_sweep_equals_a_one_example_one_level_loop(family):
    adapter = tiny_adapter(family, F64)
    examples = data(adapter, 5)
    result = headlens.sweep(adapter, examples, methods=["grad", "entropy"], batch_size=3, eval_batch_size=16, progress=False)
    batch = examples.collate(range(5))
    for arm_index, curve in enumerate(result.curves):
        for row in range(5):
            single = alone(batch, row)
            scores = headlens.score(adapter, single, curve.method)[0]
            for level_index, level in enumerate(LEVELS):
                mask = reference_mask(scores, curve.order, curve.unit, level, adapter.count_rule)
                expected = float(single.labels[0, predict(adapter, single, mask)])
                assert result.soft[arm_index, row, level_index] == pytest.approx(expected), (curve, row, level)
    assert result.example_ids == batch.ids
    assert hooks_left(adapter.model) == []


def test_global_sweep_ranks_by_mean_scores_of_the_scoring_split(family):
    adapter = tiny_adapter(family, F64)
    evaluated, scoring = data(adapter, 4, seed=1), data(adapter, 6, seed=2)
    result = headlens.sweep(
        adapter, evaluated, methods=["taylor"], units=["head"], protocols=["global"], score_data=scoring,
        batch_size=4, progress=False,
    )  # fmt: skip
    mean = headlens.score(adapter, scoring.collate(range(6)), "taylor").mean(0)
    batch = evaluated.collate(range(4))
    for arm_index, curve in enumerate(result.curves):
        for level_index, level in enumerate(LEVELS):
            mask = reference_mask(mean, curve.order, "head", level, adapter.count_rule)
            for row in range(4):
                single = alone(batch, row)
                expected = float(single.labels[0, predict(adapter, single, mask)])
                assert result.soft[arm_index, row, level_index] == pytest.approx(expected)
    assert result.score_ids == scoring.collate(range(6)).ids
    assert result.example_ids == batch.ids and not set(result.score_ids) & set(result.example_ids)


def test_results_do_not_depend_on_batch_sizes(family):
    adapter = tiny_adapter(family, F64)
    examples, scoring = data(adapter, 7), data(adapter, 5, seed=3)
    options = dict(methods=["grad", "random"], protocols=["per_example", "global"], score_data=scoring, progress=False)
    small = headlens.sweep(adapter, examples, batch_size=1, eval_batch_size=5, **options)
    large = headlens.sweep(adapter, examples, batch_size=7, eval_batch_size=1000, **options)
    np.testing.assert_array_equal(small.soft, large.soft)


def test_level_zero_is_the_unpruned_accuracy_and_orders_differ():
    adapter = tiny_adapter("lxmert")
    examples = synthetic(adapter, 24, labels="model")
    result = headlens.sweep(adapter, examples, methods=["grad"], units=["head"], progress=False)
    positive, negative = result.curve("grad", "head", "positive"), result.curve("grad", "head", "negative")
    assert positive.accuracy[0] == negative.accuracy[0] == 100.0  # labels are the unpruned answers
    assert positive.pruned == negative.pruned == [0, 4, 8, 12, 16, 20, 24, 28, 33, 37]  # 40 heads, keep_floor
    assert negative.auc > positive.auc


def test_sweep_rejects_bad_arguments():
    adapter = tiny_adapter("visual_bert")
    examples = synthetic(adapter, 2)
    with pytest.raises(ValueError, match="global protocol needs score_data"):
        headlens.sweep(adapter, examples, protocols=["global"], progress=False)
    with pytest.raises(ValueError, match="orders: \\['upward'\\] is not a non-empty choice of positive, negative"):
        headlens.sweep(adapter, examples, orders=["upward"], progress=False)
    with pytest.raises(KeyError, match="unknown scoring method"):
        headlens.sweep(adapter, examples, methods=["nope"], progress=False)


def test_result_files(tmp_path):
    adapter = tiny_adapter("visual_bert")
    result = headlens.sweep(
        adapter, synthetic(adapter, 5, labels="model"), methods=["grad", "random"], units=["layer"],
        progress=False, config={"note": "test"},
    )  # fmt: skip
    paths = write_results(result, tmp_path)
    document = json.loads(paths["json"].read_text())
    (run,) = document["runs"]
    assert run["config"] == {"note": "test"} and run["n_examples"] == 5 and run["levels"] == list(LEVELS)
    assert run["example_ids"] == [f"synthetic-0-{i}" for i in range(5)] and run["wall_time_s"] > 0
    curve = run["curves"][0]
    assert set(curve) >= {"method", "order", "unit", "protocol", "pruned", "accuracy", "auc"}
    assert curve["pruned"] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]  # 3 layers, int(p·3)
    lines = paths["csv"].read_text().splitlines()
    assert lines[0] == "model,protocol,method,unit,order,level,pruned,accuracy"
    assert len(lines) == 1 + 4 * 10
    with np.load(paths["npz"]) as npz:
        assert npz["visual_bert_soft"].shape == (4, 5, 10)
    import matplotlib.image

    assert matplotlib.image.imread(paths["png"]).shape[2] in (3, 4)
    assert not list(tmp_path.glob("*.tmp"))


def test_low_precision_evaluation_and_excluded_answers():
    adapter = tiny_adapter("lxmert")
    examples = synthetic(adapter, 12, labels="model")
    full = headlens.sweep(adapter, examples, methods=["grad"], units=["head"], progress=False)
    low = headlens.sweep(adapter, examples, methods=["grad"], units=["head"], eval_dtype="bfloat16", progress=False)
    np.testing.assert_array_equal(low.soft[:, :, 0], full.soft[:, :, 0])  # level 0: the float32 scoring pass
    assert np.mean(low.soft == full.soft) > 0.8  # bfloat16 may flip a few close answers, not most
    with pytest.raises(ValueError, match="unknown eval_dtype 'int8'; valid: None, bfloat16, float16"):
        headlens.sweep(adapter, examples, eval_dtype="int8", progress=False)
    batch = examples.collate(range(12))
    with torch.no_grad():
        favourite = int(adapter.logits(batch.inputs).argmax(-1).mode().values)
    labels = torch.zeros(12, batch.labels.shape[1])
    labels[:, favourite] = 1.0

    class Labelled:
        def __len__(self):
            return 12

        def collate(self, indices):
            b = examples.collate(indices)
            b.labels = labels[: len(indices)]
            return b

    data = Labelled()
    kept = headlens.sweep(adapter, data, methods=["random"], units=["layer"], progress=False)
    excluding = adapter_for(adapter.model, exclude_answers=[favourite])
    excluded = headlens.sweep(excluding, data, methods=["random"], units=["layer"], progress=False)
    assert kept.curves[0].accuracy[0] > 0 and excluded.soft.max() == 0  # the excluded answer is never predicted
