"""Iterative pruning: re-scoring before each level with the pruned heads gated off."""

import json

import pytest
import torch

import headlens
from headlens.iterative import extend, iterative_masks
from headlens.masks import head_masks, pruned_count
from headlens.scoring import score_batch

from conftest import hooks_left, synthetic, tiny_adapter
from helpers import alone

F64 = torch.float64
LEVELS = (0.0, 0.25, 0.5, 0.75)


def test_extend_prunes_the_next_units_among_the_kept_ones():
    scores = torch.tensor([[[3.0, 1.0, 2.0, 0.0], [5.0, -1.0, 4.0, 6.0]]])  # [1, 2 sites, 4 heads]
    keep = torch.ones(1, 2, 4)
    keep[0, 1, 1] = 0  # already pruned, whatever its score
    expected = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]]])
    torch.testing.assert_close(extend(keep, scores, 3, "negative", "head"), expected)
    expected = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]]])
    torch.testing.assert_close(extend(keep, scores, 3, "positive", "head"), expected)
    layers = torch.ones(1, 3, 2)
    layers[0, 0] = 0
    by_layer = extend(layers, torch.tensor([[[9.0, 9.0], [2.0, 2.0], [1.0, 1.0]]]), 2, "positive", "layer")
    torch.testing.assert_close(by_layer, torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]]))


def test_with_scores_that_do_not_change_iterative_masks_are_the_plain_ones():
    scores = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    for order in ("positive", "negative"):
        for unit in ("head", "layer"):
            plain = head_masks(scores, headlens.LEVELS, order, unit, "keep_floor")
            iterative = iterative_masks(lambda keep: scores, scores, headlens.LEVELS, order, unit, "keep_floor")
            torch.testing.assert_close(iterative, plain, rtol=0, atol=0)


def greedy_reference(adapter, single, method, order, unit, score_gate):
    """Masks ``[levels, sites, heads]`` of one example by re-scoring and sorting Python lists:
    ``score_gate(mask)`` scores the model gated by ``mask`` ``[sites, heads]``."""
    sites, heads = adapter.num_sites, adapter.num_heads
    mask, masks, done = torch.ones(sites, heads, dtype=F64), [], 0
    for level in LEVELS:
        total = sites * heads if unit == "head" else sites
        count = pruned_count(total, level, adapter.count_rule)
        if count > done:
            scores = score_gate(mask)
            if unit == "head":
                units = [(float(scores[s, h]), s * heads + h) for s in range(sites) for h in range(heads) if mask[s, h]]
            else:
                units = [(float(scores[s].mean()), s) for s in range(sites) if mask[s, 0]]
            ranked = sorted(units, key=lambda u: (-u[0] if order == "positive" else u[0], u[1]))
            for _, index in ranked[: count - done]:
                if unit == "head":
                    mask[index // heads, index % heads] = 0
                else:
                    mask[index] = 0
            done = count
        masks.append(mask.clone())
    return torch.stack(masks)


def predict(adapter, single, mask):
    with torch.no_grad(), headlens.gates(adapter, mask[None]):
        return int(adapter.predict(adapter.logits(single.inputs))[0])


@pytest.mark.parametrize("protocol", ["per_example", "global"])
def test_iterative_sweep_equals_greedy_rescoring_and_the_plain_sweep_at_the_first_level(protocol):
    adapter = tiny_adapter("visual_bert", F64)
    examples, scoring = synthetic(adapter, 3, seed=0, labels="model"), synthetic(adapter, 2, seed=1, labels="model")
    options = dict(methods=["exact"], protocols=[protocol], levels=LEVELS, units=["head"], batch_size=2,
                   eval_batch_size=64, progress=False)  # fmt: skip
    plain = headlens.sweep(adapter, examples, scoring, **options)
    iterative = headlens.sweep(adapter, examples, scoring, iterative=True, **options)
    assert [c.label for c in iterative.curves] == [c.label.replace("exact/", "exact+iterative/") for c in plain.curves]
    assert iterative.curves[0].label == f"exact+iterative/head/positive/{protocol}"
    # level 0 and the first pruned level rank on the unpruned scores: the same numbers
    torch.testing.assert_close(torch.from_numpy(iterative.soft[:, :, :2]), torch.from_numpy(plain.soft[:, :, :2]),
                               rtol=0, atol=0)  # fmt: skip
    batch, score_batch_ = examples.collate(range(3)), scoring.collate(range(2))
    with torch.no_grad():
        unpruned_scoring = adapter.predict(adapter.logits(score_batch_.inputs))

    def global_gate(mask):
        _, scores = score_batch(adapter, score_batch_.inputs, ["exact"], gate=mask[None].expand(2, -1, -1),
                                target=unpruned_scoring)  # fmt: skip
        return scores["exact"].mean(0)

    differs = False
    for arm, curve in enumerate(iterative.curves):
        for row in range(3):
            single = alone(batch, row)
            with torch.no_grad():
                target = adapter.predict(adapter.logits(single.inputs))

            def example_gate(mask):
                return score_batch(adapter, single.inputs, ["exact"], gate=mask[None], target=target)[1]["exact"][0]

            masks = greedy_reference(adapter, single, "exact", curve.order, curve.unit,
                                     example_gate if protocol == "per_example" else global_gate)  # fmt: skip
            for level in range(len(LEVELS)):
                expected = float(single.labels[0, predict(adapter, single, masks[level])])
                assert iterative.soft[arm, row, level] == pytest.approx(expected), (curve.label, row, level)
            first = example_gate(torch.ones_like(masks[0])) if protocol == "per_example" else global_gate(torch.ones_like(masks[0]))
            plain_masks = head_masks(first, LEVELS, curve.order, "head", adapter.count_rule)
            torch.testing.assert_close(masks[:2], plain_masks[:2].to(F64), rtol=0, atol=0)
            differs |= not torch.equal(masks[2:], plain_masks[2:].to(F64))
    assert differs  # re-scoring the pruned model changes the ranking of some later level
    assert hooks_left(adapter.model) == []


def test_every_method_prunes_iteratively_in_both_protocols():
    adapter = tiny_adapter("visual_bert", F64)
    examples, scoring = synthetic(adapter, 2, seed=0, labels="model"), synthetic(adapter, 2, seed=1, labels="model")
    methods = [m for m in headlens.METHODS if m != "exact"]
    options = dict(methods=methods, protocols=["per_example", "global"], levels=(0.0, 0.25, 0.5), batch_size=2,
                   progress=False)  # fmt: skip
    plain = headlens.sweep(adapter, examples, scoring, **options)
    iterative = headlens.sweep(adapter, examples, scoring, iterative=True, **options)
    assert {c.method for c in iterative.curves} == {f"{m}+iterative" for m in methods}
    torch.testing.assert_close(torch.from_numpy(iterative.soft[:, :, :2]), torch.from_numpy(plain.soft[:, :, :2]),
                               rtol=0, atol=0)  # fmt: skip
    assert hooks_left(adapter.model) == []


def test_sweep_command_takes_iterative_and_correlation_keys(tmp_path, capsys):
    from headlens.cli import main

    out = tmp_path / "run"
    assert main(["sweep", "--preset", "tiny-visual_bert", f"out_dir={out}", "data.num_examples=2", "data.score_examples=2",
                 "sweep.methods=[exact,fisher]", "sweep.units=[head]", "sweep.orders=[negative]", "sweep.iterative=true",
                 "sweep.correlation=2", "sweep.levels=[0,0.25,0.5]", "progress=false", "report=false"]) == 0  # fmt: skip
    assert "exact+iterative/head/negative/per_example" in capsys.readouterr().out
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert [c["method"] for c in run["curves"]] == ["exact+iterative", "fisher+iterative"] * 2
    assert run["correlations"]["n_examples"] == 2 and run["config"]["sweep"]["iterative"] is True
    assert main(["sweep", "sweep.correlation=-1"]) == 2
    assert "sweep.correlation" in capsys.readouterr().err
