import pytest
import torch

import headlens
from headlens.data.batch import Batch
from headlens.edits import capture, gates
from headlens.scoring import METHODS, get_method, layer_scores

from conftest import hooks_left, tiny_adapter, tiny_batch
from helpers import alone, finite_difference_gate_gradients

F64 = torch.float64


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_shape_finite_deterministic_batch_equals_per_example_no_hooks(family, method):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=5, dtype=F64)
    scores = headlens.score(adapter, batch, method)
    assert scores.shape == (5, adapter.num_sites, adapter.num_heads)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(headlens.score(adapter, batch, method), scores, rtol=0, atol=0)
    for row in range(5):
        single = headlens.score(adapter, alone(batch, row), method)
        torch.testing.assert_close(single[0], scores[row], rtol=1e-8, atol=1e-10)
    assert scores.std() > 0
    assert hooks_left(adapter.model) == []


def site_sizes(adapter, batch: Batch) -> torch.Tensor:
    """``[sites]`` number of (query, key) positions of each site for a batch of one without text padding."""
    text = batch.inputs["attention_mask"].shape[1]
    boxes = batch.inputs[adapter.image_key].shape[1]
    size = {"text": text, "image": boxes, "joint": text + boxes}
    return torch.tensor([size[s.query] * size[s.key] for s in adapter.sites], dtype=F64)


def test_grad_and_taylor_equal_finite_differences_of_the_gates(family):
    """Independent float64 reference: Σ G·A = ∂z_c/∂gate (gates are checked against zeroing by hand);
    grad is its mean over every position of the site, taylor its absolute value."""
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=3, dtype=F64)
    grad_scores = headlens.score(adapter, batch, "grad")
    taylor_scores = headlens.score(adapter, batch, "taylor")
    for row in range(3):
        single = alone(batch, row)
        with torch.no_grad():
            target = adapter.logits(single.inputs).argmax(-1)
        derivative = finite_difference_gate_gradients(adapter, single, target)[0]
        reference = derivative / site_sizes(adapter, single)[:, None]
        torch.testing.assert_close(grad_scores[row], reference, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(taylor_scores[row], derivative.abs(), rtol=1e-5, atol=1e-9)


def test_taylor_equals_autograd_of_gate_leaves(family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    cap = capture(adapter, batch.inputs, grad=False)
    mask = torch.ones(4, adapter.num_sites, adapter.num_heads, dtype=F64, requires_grad=True)
    with gates(adapter, mask):
        logits = adapter.logits(batch.inputs)
    (gate_grad,) = torch.autograd.grad(logits.gather(1, cap.target[:, None]).sum(), mask)
    torch.testing.assert_close(headlens.score(adapter, batch, "taylor"), gate_grad.abs(), rtol=1e-10, atol=1e-12)


def test_grad_equals_mean_of_hf_attention_gradients_per_example():
    """VisualBERT returns its probability tensors: G from them, mean over the whole
    (unpadded) site, padded box slots included (docs/method.md#grad)."""
    adapter = tiny_adapter("visual_bert", F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    scores = headlens.score(adapter, batch, "grad")
    for row in range(4):
        single = alone(batch, row)
        out = adapter.model(**single.inputs, output_attentions=True)
        for a in out.attentions:
            a.retain_grad()
        target = out.logits.argmax(-1)
        out.logits[0, target[0]].backward()
        for s, a in enumerate(out.attentions):
            expected = (a.grad * a)[0].mean(dim=(-2, -1))
            torch.testing.assert_close(scores[row, s], expected.detach(), rtol=1e-9, atol=1e-12)


def test_entropy_equals_a_loop_over_rows_of_hf_attentions():
    adapter = tiny_adapter("visual_bert", F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    scores = headlens.score(adapter, batch, "entropy")
    for row in range(4):
        single = alone(batch, row)
        with torch.no_grad():
            attentions = adapter.model(**single.inputs, output_attentions=True).attentions
        real = torch.cat([single.inputs["attention_mask"][0], single.inputs["visual_attention_mask"][0]]).bool()
        for s, a in enumerate(attentions):
            for h in range(adapter.num_heads):
                rows = [-sum(float(p) * torch.log(p).item() for p in a[0, h, i] if p > 0) for i in range(len(real)) if real[i]]
                assert scores[row, s, h].item() == pytest.approx(-sum(rows) / len(rows), rel=1e-9)


def test_random_scores_depend_on_seed_and_id_only():
    adapter = tiny_adapter("lxmert")
    batch = tiny_batch(adapter, size=4)
    scores = headlens.score(adapter, batch, "random", seed=7)
    assert ((scores >= 0) & (scores < 1)).all()
    reordered = Batch({}, batch.labels.flip(0), batch.ids[::-1], inputs={k: v.flip(0) for k, v in batch.inputs.items()})
    torch.testing.assert_close(headlens.score(adapter, reordered, "random", seed=7).flip(0), scores, rtol=0, atol=0)
    assert not torch.equal(headlens.score(adapter, batch, "random", seed=8), scores)
    assert not torch.equal(scores[0], scores[1])


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown scoring method .lrpp.; valid: grad, lrp, attnlrp, taylor, entropy, random"):
        get_method("lrpp")
    assert get_method("ours").name == "grad"


def test_layer_scores_are_head_means():
    scores = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(layer_scores(scores), torch.tensor([[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]]))
