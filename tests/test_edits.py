import copy
import math

import pytest
import torch

from headlens.adapters import adapter_for
from headlens.edits import capture, eval_mode, gates, intercept

from conftest import hooks_left, tiny_adapter, tiny_batch

F64 = torch.float64


def zero_head_by_hand(model, site, head):
    """A copy of ``model`` whose head's value projection is zero: its context slice, A·V, is then 0,
    exactly what multiplying the head's probabilities by 0 gives (docs/method.md#pruning-a-head)."""
    model = copy.deepcopy(model)
    attention = model.get_submodule(site.module.rsplit(".", 1)[0])
    size = attention.attention_head_size
    with torch.no_grad():
        attention.value.weight[head * size : (head + 1) * size] = 0
        attention.value.bias[head * size : (head + 1) * size] = 0
    return model


def unshared_sites(adapter):
    modules = [s.module for s in adapter.sites]
    return [(i, s) for i, s in enumerate(adapter.sites) if modules.count(s.module) == 1]


def test_gating_one_head_equals_zeroing_it_by_hand(family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, dtype=F64)
    for index, site in unshared_sites(adapter)[::2]:
        head = index % adapter.num_heads
        mask = torch.ones(len(batch), adapter.num_sites, adapter.num_heads, dtype=F64)
        mask[:, index, head] = 0
        with torch.no_grad(), gates(adapter, mask):
            gated = adapter.logits(batch.inputs)
        reference = adapter_for(zero_head_by_hand(adapter.model, site, head))
        with torch.no_grad():
            expected = reference.logits(batch.inputs)
            unpruned = adapter.logits(batch.inputs)
        torch.testing.assert_close(gated, expected, rtol=1e-10, atol=1e-10)
        assert not torch.allclose(gated, unpruned), f"pruning {site.name} h{head} changed nothing"


def manual_cross_attention(attention, zero_call, head):
    """LXMERT's attention forward written out by hand, zeroing ``head``'s probabilities on
    one call (0: language→vision, 1: vision→language) of each forward pass."""
    calls = []

    def forward(hidden_states, context, attention_mask=None, output_attentions=False):
        call = len(calls) % 2
        calls.append(call)
        b, n = hidden_states.shape[:2]
        d = attention.attention_head_size

        def split(x):
            return x.view(b, x.shape[1], -1, d).transpose(1, 2)

        q, k, v = split(attention.query(hidden_states)), split(attention.key(context)), split(attention.value(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = scores.softmax(-1)
        if call == zero_call:
            probs = probs.clone()
            probs[:, head] = 0
        context_layer = (probs @ v).transpose(1, 2).reshape(b, n, -1)
        return (context_layer, probs) if output_attentions else (context_layer,)

    return forward


def test_lxmert_cross_directions_are_separate_sites_gated_independently():
    adapter = tiny_adapter("lxmert", F64)
    batch = tiny_batch(adapter, dtype=F64)
    names = adapter.site_names
    head = 1
    outputs = {}
    for direction, call in (("l2v", 0), ("v2l", 1)):
        index = names.index(f"x.0.{direction}")
        mask = torch.ones(len(batch), adapter.num_sites, adapter.num_heads, dtype=F64)
        mask[:, index, head] = 0
        with torch.no_grad(), gates(adapter, mask):
            outputs[direction] = adapter.logits(batch.inputs)
        reference = copy.deepcopy(adapter.model)
        attention = reference.lxmert.encoder.x_layers[0].visual_attention.att
        attention.forward = manual_cross_attention(attention, call, head)
        with torch.no_grad():
            expected = adapter_for(reference).logits(batch.inputs)
        torch.testing.assert_close(outputs[direction], expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(outputs["l2v"], outputs["v2l"])


def test_per_example_gates_in_one_batch_equal_each_example_alone(family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=5, dtype=F64)
    generator = torch.Generator().manual_seed(3)
    masks = (torch.rand(5, adapter.num_sites, adapter.num_heads, generator=generator) > 0.4).to(F64)
    with torch.no_grad(), gates(adapter, masks):
        together = adapter.logits(batch.inputs)
    for row in range(5):
        length = int(batch.inputs["attention_mask"][row].sum())
        alone = {k: v[row : row + 1] for k, v in batch.inputs.items()}
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            alone[key] = alone[key][:, :length]  # no text padding when alone
        with torch.no_grad(), gates(adapter, masks[row : row + 1]):
            single = adapter.logits(alone)
        torch.testing.assert_close(together[row : row + 1], single, rtol=1e-9, atol=1e-9)


def test_gate_mask_shape_and_batch_are_checked(family):
    adapter = tiny_adapter(family)
    batch = tiny_batch(adapter, size=3)
    with pytest.raises(ValueError, match=r"gate mask must be \[batch"):
        with gates(adapter, torch.ones(3, adapter.num_sites + 1, adapter.num_heads)):
            pass
    with pytest.raises(ValueError, match="gate mask is for 2 examples, the forward pass has 3"):
        with gates(adapter, torch.ones(2, adapter.num_sites, adapter.num_heads)):
            adapter.logits(batch.inputs)
    assert hooks_left(adapter.model) == []


def test_capture_shapes_padding_and_gradients(family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    cap = capture(adapter, batch.inputs)
    text = batch.inputs["attention_mask"].shape[1]
    boxes = 5
    sizes = {"text": text, "image": boxes, "joint": text + boxes}
    for site, attn, grad, query, key in zip(cap.sites, cap.attn, cap.grad, cap.query, cap.key):
        assert attn.shape == (4, adapter.num_heads, sizes[site.query], sizes[site.key]), site.name
        assert grad.shape == attn.shape
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))
        padded_keys = ~key.mask[:, None, None, :].expand_as(attn)
        assert attn[padded_keys].abs().sum() == 0, f"{site.name}: attention on padded keys"
    assert torch.equal(cap.target, cap.logits.argmax(-1))


def test_capture_gradient_equals_autograd_through_hf_returned_attentions():
    """An independent route to ∂z/∂A: VisualBERT returns the very probability tensors it
    multiplies with V (dropout is the identity in eval mode)."""
    adapter = tiny_adapter("visual_bert", F64)
    batch = tiny_batch(adapter, size=3, dtype=F64)
    cap = capture(adapter, batch.inputs)
    out = adapter.model(**batch.inputs, output_attentions=True)
    for a in out.attentions:
        a.retain_grad()
    out.logits.gather(1, cap.target[:, None]).sum().backward()
    for site_grad, site_attn, hf in zip(cap.grad, cap.attn, out.attentions):
        torch.testing.assert_close(site_attn, hf.detach())
        torch.testing.assert_close(site_grad, hf.grad, rtol=1e-10, atol=1e-12)


def test_capture_works_on_a_frozen_model_and_with_an_explicit_target(family):
    adapter = tiny_adapter(family, F64)
    for p in adapter.model.parameters():
        p.requires_grad_(False)
    batch = tiny_batch(adapter, size=3, dtype=F64)
    target = torch.tensor([0, 1, 2])
    cap = capture(adapter, batch.inputs, target=target)
    assert torch.equal(cap.target, target)
    assert all(g.abs().sum() > 0 for g in cap.grad[:1])
    assert not any(p.grad is not None for p in adapter.model.parameters())


def test_no_hook_is_left_after_a_normal_run_or_an_exception(family):
    adapter = tiny_adapter(family)
    batch = tiny_batch(adapter, size=3)
    mask = torch.ones(3, adapter.num_sites, adapter.num_heads)
    capture(adapter, batch.inputs)
    with gates(adapter, mask):
        adapter.logits(batch.inputs)
    assert hooks_left(adapter.model) == []
    for context in (lambda: gates(adapter, mask), lambda: intercept(adapter, lambda i, p: p)):
        with pytest.raises(RuntimeError, match="boom"):
            with context():
                assert hooks_left(adapter.model) != []
                raise RuntimeError("boom")
        assert hooks_left(adapter.model) == []

    def failing(index, probs):
        raise RuntimeError("boom in a hook")

    with pytest.raises(RuntimeError, match="boom in a hook"):
        with intercept(adapter, failing):
            adapter.logits(batch.inputs)
    assert hooks_left(adapter.model) == []


def test_eval_mode_restores_every_module_mode():
    adapter = tiny_adapter("lxmert")
    adapter.model.train()
    adapter.model.lxmert.pooler.eval()
    with eval_mode(adapter.model):
        assert not any(m.training for m in adapter.model.modules())
    assert adapter.model.training and not adapter.model.lxmert.pooler.training
