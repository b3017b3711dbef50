import numpy as np
import pytest
import torch

from headlens.adapters import adapter_for
from headlens.data.batch import Batch
from headlens.errors import InputError
from headlens.faithfulness import (
    FRACTIONS, ORDERS, faithfulness_table, perturbation_test, random_relevance, removable, removal_order, removed_at,
    remove_units, unit_relevance,
)  # fmt: skip
from headlens.metrics import accuracy
from headlens.relevance import relevance_maps

from conftest import hooks_left, synthetic, tiny_adapter
from helpers import image_inputs, text_inputs, text_model, vit_model

F64 = torch.float64


class Fields:
    """A handful of examples given as model inputs, with random one-hot labels."""

    def __init__(self, inputs: dict, classes: int, seed: int = 0):
        self.inputs, self.n = inputs, next(iter(inputs.values())).shape[0]
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.nn.functional.one_hot(torch.randint(0, classes, (self.n,), generator=g), classes).float()

    def __len__(self):
        return self.n

    def collate(self, indices):
        rows = list(indices)
        fields = {k: v[rows] for k, v in self.inputs.items()}
        if "attention_mask" in fields:  # trim to the longest, as the real text data does
            length = int(fields["attention_mask"].sum(1).max())
            fields = {k: v[:, :length] for k, v in fields.items()}
        return Batch(fields, self.labels[rows], [f"x-{i}" for i in rows])


def subjects():
    vit = adapter_for(vit_model())
    text = adapter_for(text_model("probe"))
    return {
        "visual_bert": (tiny_adapter("visual_bert", F64), None),
        "lxmert": (tiny_adapter("lxmert", F64), None),
        "vit": (vit, Fields({"pixels": image_inputs(5).pop("pixel_values")}, 10)),
        "probe": (text, Fields(text_inputs(5, length=9), 3)),
    }


@pytest.fixture(scope="module", params=["visual_bert", "lxmert", "vit", "probe"])
def subject(request):
    adapter, data = subjects()[request.param]
    if data is None:
        data = synthetic(adapter, 5, seed=2, labels="random")
    return adapter, data, request.param


def unpruned_soft(adapter, batch):
    with torch.no_grad():
        answers = adapter.predict(adapter.logits(batch.inputs))
    return batch.labels[torch.arange(len(answers)), answers].double().numpy()


def test_removing_nothing_is_the_unperturbed_accuracy_and_batches_equal_single_examples(subject):
    adapter, data, _ = subject
    result = perturbation_test(adapter, data, methods=["ours", "raw"], batch_size=3, bootstrap=50)
    batch = adapter.examples(data).collate(range(len(data)))
    expected = accuracy(unpruned_soft(adapter, batch)[:, None])[0]
    assert [(c.method, c.order) for c in result.curves] == [(m, o) for m in ("ours", "raw", "random") for o in ORDERS]
    assert all(c.accuracy[0] == pytest.approx(expected) for c in result.curves)
    assert all(c.auc_low <= c.auc <= c.auc_high for c in result.curves)
    single = perturbation_test(adapter, data, methods=["ours", "raw"], batch_size=1, bootstrap=0)
    np.testing.assert_array_equal(single.soft, result.soft)
    assert result.example_ids == [str(i) for i in batch.ids] and hooks_left(adapter.model) == []


def test_a_perturbed_answer_equals_a_forward_on_the_input_with_those_units_removed_by_hand(subject):
    adapter, data, name = subject
    result = perturbation_test(adapter, data, methods=["raw"], fractions=[0.0, 0.5], bootstrap=0)
    examples = adapter.examples(data)
    for row in range(len(data)):
        batch = examples.collate([row])  # one example: no padding beyond its own
        values = unit_relevance(adapter, relevance_maps(adapter, batch.inputs, "raw"))[0].tolist()
        allowed = removable(adapter, batch.inputs)[0].tolist()
        candidates = [u for u, ok in enumerate(allowed) if ok]
        ranked = sorted(candidates, key=lambda u: (-values[u], u))  # most relevant first
        chosen = ranked[: int(0.5 * len(candidates))]
        inputs = {k: v.clone() for k, v in batch.inputs.items()}
        if name == "vit":
            for u in chosen:
                r, c = divmod(u, 4)
                inputs["pixel_values"][0, :, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = 0
        else:
            key = "attention_mask" if name == "probe" else "visual_attention_mask"
            inputs[key] = inputs.get(key, torch.ones(1, len(allowed), dtype=torch.long)).clone()
            inputs[key][0, chosen] = 0
        with torch.no_grad():
            answer = int(adapter.predict(adapter.logits(inputs))[0])
        assert result.soft[0, row, 1] == pytest.approx(float(batch.labels[0, answer])), row  # raw, positive
        assert len(chosen) > 0


def test_units_are_removed_in_relevance_order_and_special_tokens_never():
    relevance = torch.tensor([[3.0, 1.0, 2.0, 0.5, 9.0]])
    allowed = torch.tensor([[True, True, True, True, False]])
    positive, negative = (removal_order(relevance, allowed, o) for o in ORDERS)
    assert positive[0, :4].tolist() == [0, 2, 1, 3] and negative[0, :4].tolist() == [3, 1, 2, 0]
    removed = removed_at(positive, allowed, [0.0, 0.25, 0.5, 0.9])
    assert removed[0].int().tolist() == [[0] * 5, [1, 0, 0, 0, 0], [1, 0, 1, 0, 0], [1, 1, 1, 0, 0]]
    text = adapter_for(text_model("bert"))
    inputs = {"input_ids": torch.ones(2, 6, dtype=torch.long), "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2])}
    assert removable(text, inputs).int().tolist() == [[0, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]]
    out = remove_units(text, inputs, torch.tensor([[False, True, False, False, True, False]] * 2))
    assert out["attention_mask"].tolist() == [[1, 0, 1, 1, 0, 1], [1, 0, 1, 1, 0, 0]]
    vit = adapter_for(vit_model())
    pixels = torch.ones(1, 1, 8, 8, dtype=F64)
    cut = remove_units(vit, {"pixel_values": pixels}, torch.tensor([[True] + [False] * 14 + [True]]))["pixel_values"]
    assert cut[0, 0, :2, :2].sum() == 0 and cut[0, 0, 6:, 6:].sum() == 0 and cut.sum() == 64 - 8


def test_random_order_is_fixed_by_the_example_and_not_by_the_padding():
    a = random_relevance(["q1", "q2"], 7, seed=3)
    assert torch.equal(a[:, :5], random_relevance(["q1", "q2"], 5, seed=3))
    assert torch.equal(a[1], random_relevance(["q2"], 7, seed=3)[0]) and not torch.equal(a[0], a[1])


def test_bad_fractions_and_families_are_refused():
    adapter = tiny_adapter("visual_bert")
    data = synthetic(adapter, 2)
    with pytest.raises(InputError, match=r"fractions must start at 0 and increase below 1, got \[0.0, 1.0\]"):
        perturbation_test(adapter, data, fractions=[0.0, 1.0])


def test_table_has_one_row_per_map_with_intervals():
    adapter = tiny_adapter("visual_bert")
    result = perturbation_test(adapter, synthetic(adapter, 4, labels="model"), methods=["rollout"], bootstrap=20)
    table = faithfulness_table(result)
    assert table[0].startswith("| map | most relevant boxes removed first") and len(table) == 4
    assert table[2].startswith("| rollout | ") and table[3].startswith("| random | ") and table[2].count("[") == 2
    assert result.to_dict()["curves"][0]["fractions"] == list(FRACTIONS)
