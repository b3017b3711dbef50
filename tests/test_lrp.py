import pytest
import torch
import torch.nn.functional as F

from headlens.hooks import capture
from headlens.relevance.lrp import lrp_mode, safe_divide

from conftest import hooks_left, tiny_adapter, tiny_batch
from test_scoring import alone

F64 = torch.float64


def relevance_through(fn, inputs, relevance, pass_modules=(), model=None):
    """Run ``fn`` under LRP mode and send ``relevance`` back to ``inputs``."""
    inputs = [x.clone().requires_grad_() for x in inputs]
    with lrp_mode(model or torch.nn.Module(), pass_modules):
        out = fn(*inputs)
    return torch.autograd.grad(out, inputs, grad_outputs=relevance, allow_unused=True)


def test_safe_divide():
    a = torch.tensor([1.0, 1.0, 1.0, 2.0], dtype=F64)
    b = torch.tensor([0.0, 2.0, -1e-9, -4.0], dtype=F64)
    out = safe_divide(a, b)
    assert out[0] == 0 and out[1] == pytest.approx(1 / (2 + 1e-9)) and torch.isfinite(out).all()
    assert out[3] == pytest.approx(2 / (-4 + 1e-9))


def test_linear_rule_is_alpha1_beta0_with_the_bias_ignored():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 3, 4, generator=g, dtype=F64), torch.randn(5, 4, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    r = torch.randn(2, 3, 5, generator=g, dtype=F64)
    (got,) = relevance_through(lambda x: F.linear(x, w, b), [x], r)
    expected = torch.zeros_like(x)
    for n in range(2):
        for t in range(3):
            xp, xn = x[n, t].clamp(min=0), x[n, t].clamp(max=0)
            z = [sum(w[j, i].clamp(min=0) * xp[i] + w[j, i].clamp(max=0) * xn[i] for i in range(4)) for j in range(5)]
            s = [r[n, t, j] / (z[j] + 1e-9) if z[j] != 0 else 0 for j in range(5)]
            for i in range(4):
                expected[n, t, i] = sum((xp[i] * w[j, i].clamp(min=0) + xn[i] * w[j, i].clamp(max=0)) * s[j] for j in range(5))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # Conservation holds where every output has a positive contribution (Z > 0): e.g. x ≥ 0.
    (positive,) = relevance_through(lambda x: F.linear(x, w, b), [x.abs() + 0.1], r)
    torch.testing.assert_close(positive.sum((1, 2)), r.sum((1, 2)), rtol=1e-6, atol=1e-8)


def test_add_rule_shares_by_branch_sums_per_example_and_conserves():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 4, generator=g, dtype=F64), torch.randn(1, 4, generator=g, dtype=F64)  # b is broadcast
    r = torch.randn(3, 4, generator=g, dtype=F64)
    ra, rb = relevance_through(lambda a, b: a + b, [a, b], r)
    expected_a, expected_b = torch.zeros_like(a), torch.zeros(3, 4, dtype=F64)
    for n in range(3):
        z = a[n] + b[0]
        s = r[n] / (z + 1e-9)
        xa, xb = a[n] * s, b[0] * s
        sa, sb = xa.sum(), xb.sum()
        fa = sa.abs() / (sa.abs() + sb.abs() + 1e-9) * r[n].sum()
        fb = sb.abs() / (sa.abs() + sb.abs() + 1e-9) * r[n].sum()
        expected_a[n], expected_b[n] = xa * fa / (sa + 1e-9), xb * fb / (sb + 1e-9)
    torch.testing.assert_close(ra, expected_a, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(rb, expected_b.sum(0, keepdim=True), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(ra.sum() + rb.sum(), r.sum(), rtol=1e-7, atol=1e-9)


def test_matmul_rule_gives_each_operand_half_of_gradient_times_input():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 4, 5, generator=g, dtype=F64), torch.randn(2, 3, 5, 6, generator=g, dtype=F64)
    r = torch.randn(2, 3, 4, 6, generator=g, dtype=F64)
    ra, rb = relevance_through(torch.matmul, [a, b], r)
    s = r / (a @ b + 1e-9)
    torch.testing.assert_close(ra, a * (s @ b.transpose(-1, -2)) / 2)
    torch.testing.assert_close(rb, b * (a.transpose(-1, -2) @ s) / 2)
    torch.testing.assert_close(ra.sum() + rb.sum(), r.sum(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: F.softmax(x, dim=-1),
        F.gelu,
        lambda x: F.layer_norm(x, (4,), torch.ones(4, dtype=F64), torch.zeros(4, dtype=F64)),
        torch.tanh,
        lambda x: F.dropout(x, 0.1, training=False),
        lambda x: x / 8.0,
        lambda x: 0.5 * x,
    ],
    ids=["softmax", "gelu", "layer_norm", "tanh", "dropout", "divide", "scale"],
)
def test_pass_through_ops_leave_relevance_unchanged(fn):
    g = torch.Generator().manual_seed(3)
    x, r = torch.randn(2, 3, 4, generator=g, dtype=F64), torch.randn(2, 3, 4, generator=g, dtype=F64)
    (got,) = relevance_through(fn, [x], r)
    torch.testing.assert_close(got, r)


def test_views_indexing_and_concatenation_route_relevance_and_reuse_sums_it():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, generator=g, dtype=F64)

    def fn(x):
        rearranged = x.view(2, 3, 2, 2).transpose(2, 3).reshape(2, 3, 4)
        return torch.cat([rearranged[:, :2], x[:, :1]], dim=1)  # x's first row is used twice

    r = torch.randn(2, 3, 4, generator=g, dtype=F64)
    (got,) = relevance_through(fn, [x], r)
    expected = torch.zeros_like(x)
    expected[:, :2] += r[:, :2].view(2, 2, 2, 2).transpose(2, 3).reshape(2, 2, 4)
    expected[:, :1] += r[:, 2:]
    torch.testing.assert_close(got, expected)


def test_an_op_without_a_rule_is_an_error_and_pass_modules_declare_one():
    x, y = torch.randn(2, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    with pytest.raises(RuntimeError, match="LRP has no rule for torch.Tensor.mul"):
        relevance_through(lambda x, y: x * y, [x, y], torch.ones(2, 3, dtype=F64))

    class Swish(torch.nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = torch.nn.Sequential(Swish())
    r = torch.randn(2, 3, dtype=F64)
    (got,) = relevance_through(model, [x], r, pass_modules=("Swish",), model=model)
    torch.testing.assert_close(got, r)
    assert hooks_left(model) == []


#: the modules whose outputs are the network's inputs in embedding space: token, position and
#: type embeddings, and the projections of the visual features and box coordinates.
INPUT_MODULES = {
    "lxmert": ["lxmert.embeddings.word_embeddings", "lxmert.embeddings.position_embeddings",
               "lxmert.embeddings.token_type_embeddings", "lxmert.encoder.visn_fc.visn_fc",
               "lxmert.encoder.visn_fc.box_fc"],
    "visual_bert": ["visual_bert.embeddings.word_embeddings", "visual_bert.embeddings.position_embeddings",
                    "visual_bert.embeddings.token_type_embeddings", "visual_bert.embeddings.visual_projection",
                    "visual_bert.embeddings.visual_position_embeddings",
                    "visual_bert.embeddings.visual_token_type_embeddings"],
}  # fmt: skip


def input_relevance(adapter, batch):
    """Per example, the relevance reaching the outputs of :data:`INPUT_MODULES`."""
    outputs = []
    handles = [
        adapter.model.get_submodule(path).register_forward_hook(lambda m, i, o: outputs.append(o))
        for path in INPUT_MODULES[adapter.family]
    ]
    try:
        with torch.enable_grad(), lrp_mode(adapter.model):
            logits = adapter.logits(batch.inputs)
    finally:
        for handle in handles:
            handle.remove()
    one_hot = torch.zeros_like(logits).scatter_(1, logits.argmax(-1, keepdim=True), 1.0)
    found = torch.autograd.grad(logits, outputs, grad_outputs=one_hot)
    per_example = torch.zeros(logits.shape[0], dtype=logits.dtype)
    for tensor in found:  # a [1, T, D] position-embedding output is shared by the batch
        assert tensor.shape[0] in (1, logits.shape[0])
        per_example = per_example + tensor.sum(tuple(range(1, tensor.dim())))
    return per_example


def test_relevance_is_conserved_from_the_answer_to_the_inputs(family):
    """One-hot relevance 1 at the answer reaches the inputs (in embedding space) whole, up to
    the 1e-9 stabiliser — tolerance 1e-6 — through every embedding sum, attention, residual
    and feed-forward block. (Before the input projections it may not: alpha-1-beta-0 drops
    the relevance of an output none of whose contributions is positive, which a 4-d box
    coordinate input makes likely.)"""
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    totals = torch.stack([input_relevance(adapter, alone(batch, row))[0] for row in range(4)])
    torch.testing.assert_close(totals, torch.ones(4, dtype=F64), rtol=0, atol=1e-6)
    if family == "lxmert":  # no broadcast branch: the whole batch at once gives the same
        torch.testing.assert_close(input_relevance(adapter, batch), totals, rtol=0, atol=1e-9)
    assert hooks_left(adapter.model) == []


def test_attention_relevance_of_a_batch_equals_each_example_alone(family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    together = capture(adapter, batch.inputs, grad=False, relevance=True)
    for row in range(4):
        single = alone(batch, row)
        length = single.inputs["input_ids"].shape[1]
        one = capture(adapter, single.inputs, grad=False, relevance=True)
        for site, r_batch, r_one in zip(together.sites, together.relevance, one.relevance):
            sizes = {"text": length, "image": r_one.shape[-1] if site.key == "image" else None}
            got = r_batch[row]
            if site.query == "text":
                got = got[:, :length]
            if site.key == "text":
                got = got[:, :, :length]
            if site.query == "joint":
                keep = torch.cat([torch.arange(length), torch.arange(batch.inputs["input_ids"].shape[1], got.shape[-1])])
                got = got[:, keep][:, :, keep]
            torch.testing.assert_close(got, r_one[0], rtol=1e-8, atol=1e-12), (site.name, sizes)


def test_lrp_mode_is_left_after_an_exception():
    adapter = tiny_adapter("lxmert")
    batch = tiny_batch(adapter, 2)
    with pytest.raises(RuntimeError, match="boom"):
        with lrp_mode(adapter.model):
            raise RuntimeError("boom")
    x = torch.randn(2, 3, requires_grad=True)
    y = torch.randn(2, 3, requires_grad=True)
    (x * y).sum()  # no LRP mode left behind: a product of activations is fine again
    assert hooks_left(adapter.model) == []
    adapter.logits(batch.inputs)
