import pytest
import torch
import torch.nn.functional as F

from headlens.edits import capture
from headlens.edits.lrp import ATTNLRP_EPSILON, lrp_mode, safe_divide

from conftest import hooks_left, tiny_adapter, tiny_batch
from helpers import alone, input_relevance

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
    with pytest.raises(RuntimeError, match="LRP has no rule for torch.Tensor.div"):
        relevance_through(lambda x, y: x / y, [x, y], torch.ones(2, 3, dtype=F64))

    class Swish(torch.nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = torch.nn.Sequential(Swish())
    r = torch.randn(2, 3, dtype=F64)
    (got,) = relevance_through(model, [x], r, pass_modules=("Swish",), model=model)
    torch.testing.assert_close(got, r)
    assert hooks_left(model) == []


def relevance_under(rules, fn, inputs, relevance, absorbed=None):
    """:func:`relevance_through` under ``rules``, collecting what the rules kept in ``absorbed``."""
    inputs = [x.clone().requires_grad_() for x in inputs]
    with lrp_mode(torch.nn.Module(), rules=rules, absorbed=absorbed):
        out = fn(*inputs)
    return torch.autograd.grad(out, inputs, grad_outputs=relevance, allow_unused=True)


def stabilised(z, eps=ATTNLRP_EPSILON):
    return z + eps if z >= 0 else z - eps


def epsilon_share(r, z):
    """``R / (z + ε·sign z)``, elementwise."""
    return r / torch.where(z >= 0, z + ATTNLRP_EPSILON, z - ATTNLRP_EPSILON)


def test_attnlrp_linear_rule_is_epsilon_lrp_and_the_bias_keeps_its_share():
    g = torch.Generator().manual_seed(5)
    x, w, b = torch.randn(2, 3, 4, generator=g, dtype=F64), torch.randn(5, 4, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    r = torch.randn(2, 3, 5, generator=g, dtype=F64)
    absorbed = {}
    (got,) = relevance_under("attnlrp", lambda x: F.linear(x, w, b), [x], r, absorbed)
    expected, kept = torch.zeros_like(x), 0.0
    for n in range(2):
        for t in range(3):
            z = [sum(w[j, i] * x[n, t, i] for i in range(4)) + b[j] for j in range(5)]
            for i in range(4):
                expected[n, t, i] = sum(x[n, t, i] * w[j, i] * r[n, t, j] / stabilised(z[j]) for j in range(5))
            kept += sum((b[j] + stabilised(z[j]) - z[j]) * r[n, t, j] / stabilised(z[j]) for j in range(5))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(absorbed["linear"], torch.as_tensor(kept, dtype=F64), rtol=1e-9, atol=1e-12)
    (unbiased,) = relevance_under("attnlrp", lambda x: F.linear(x, w), [x], r)  # no bias: conserved up to ε
    torch.testing.assert_close(unbiased.sum(), r.sum(), rtol=1e-4, atol=0)


def test_attnlrp_add_rule_splits_by_contribution_and_a_constant_keeps_its_share():
    g = torch.Generator().manual_seed(6)
    a, b, mask = (torch.randn(3, 4, generator=g, dtype=F64) for _ in range(3))
    r = torch.randn(3, 4, generator=g, dtype=F64)
    ra, rb = relevance_under("attnlrp", lambda a, b: a + b, [a, b[:1]], r)  # b is broadcast
    share = epsilon_share(r, a + b[:1])
    torch.testing.assert_close(ra, a * share)
    torch.testing.assert_close(rb, (b[:1] * share).sum(0, keepdim=True))
    mask[0] = 0.0  # a padding mask's kept positions: adding zeros passes R whole (no ε lost)
    absorbed = {}
    (rx,) = relevance_under("attnlrp", lambda a: a + mask, [a], r, absorbed)  # the mask is a constant
    torch.testing.assert_close(rx[0], r[0], rtol=0, atol=0)
    torch.testing.assert_close(rx[1:], (a * epsilon_share(r, a + mask))[1:])
    torch.testing.assert_close(absorbed["add"], r.sum() - rx.sum())
    (rd,) = relevance_under("attnlrp", lambda a: a - mask, [a], r)  # a − b is a + (−b)
    torch.testing.assert_close(rd[0], r[0], rtol=0, atol=0)
    torch.testing.assert_close(rd[1:], (a * epsilon_share(r, a - mask))[1:])


def test_attnlrp_softmax_rule_is_the_taylor_expansion_at_the_input_without_its_bias_term():
    g = torch.Generator().manual_seed(7)
    x, r = torch.randn(2, 3, 5, generator=g, dtype=F64), torch.randn(2, 3, 5, generator=g, dtype=F64)
    x[0, 0, 4] = float("-inf")  # a masked key
    r[0, 0, 4] = 0.0
    absorbed = {}
    (got,) = relevance_under("attnlrp", lambda x: F.softmax(x, dim=-1), [x], r, absorbed)
    expected = torch.zeros_like(x)
    for n in range(2):
        for q in range(3):
            finite = torch.isfinite(x[n, q])
            jacobian = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, -1), x[n, q, finite])
            s = torch.softmax(x[n, q, finite], -1)
            # first-order terms of the Taylor expansion at x: s_j ≈ Σ_i J_ji x_i (+ the bias term, left out)
            expected[n, q, finite] = (jacobian * x[n, q, finite][None, :] * (r[n, q, finite] / s)[:, None]).sum(0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert got[0, 0, 4] == 0
    torch.testing.assert_close(absorbed["softmax"], r.sum() - got.sum())
    assert absorbed["softmax"].abs() > 1e-2  # not conservative by design


def test_attnlrp_layer_norm_rule_holds_the_scale_constant_and_the_bias_keeps_its_share():
    g = torch.Generator().manual_seed(8)
    x, r = torch.randn(2, 3, 6, generator=g, dtype=F64), torch.randn(2, 3, 6, generator=g, dtype=F64)
    w, b = torch.randn(6, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64)
    (got,) = relevance_under("attnlrp", lambda x: F.layer_norm(x, (6,), w, b, 1e-5), [x], r)
    leaf = x.clone().requires_grad_()  # the same map with σ detached, differentiated by autograd
    sigma = torch.sqrt(leaf.var(-1, unbiased=False, keepdim=True) + 1e-5).detach()
    y = (leaf - leaf.mean(-1, keepdim=True)) / sigma * w + b
    (gradient,) = torch.autograd.grad(y, leaf, grad_outputs=epsilon_share(r, y.detach()))
    torch.testing.assert_close(got, x * gradient, rtol=1e-9, atol=1e-12)
    (unbiased,) = relevance_under("attnlrp", lambda x: F.layer_norm(x, (6,), w, None, 1e-5), [x], r)
    y = F.layer_norm(x, (6,), w, None, 1e-5)  # without a bias, conserved up to ε: Σ R_in = Σ R y / (y + ε·sign y)
    conserved = (y * epsilon_share(r, y)).sum((1, 2))
    torch.testing.assert_close(unbiased.sum((1, 2)), conserved, rtol=1e-10, atol=1e-12)
    (chefer,) = relevance_through(lambda x: F.layer_norm(x, (6,), w, b, 1e-5), [x], r)
    torch.testing.assert_close(chefer, r)  # the variants differ: Chefer's passes it unchanged


@pytest.mark.parametrize("rules", ["chefer", "attnlrp"])
def test_a_product_of_two_activations_gives_each_half(rules):
    g = torch.Generator().manual_seed(9)
    gate, up = torch.randn(2, 3, 4, generator=g, dtype=F64), torch.randn(2, 1, 4, generator=g, dtype=F64)
    r = torch.randn(2, 3, 4, generator=g, dtype=F64)
    rg, ru = relevance_under(rules, lambda gate, up: F.silu(gate) * up, [gate, up], r)  # the SiLU-gated MLP
    torch.testing.assert_close(rg, r / 2, rtol=0, atol=0)
    torch.testing.assert_close(ru, r.sum(1, keepdim=True) / 2, rtol=1e-15, atol=1e-15)


def rms_norm(x, weight, eps=1e-6):
    """RMSNorm as Llama writes it."""
    variance = x.to(torch.float32 if x.dtype == torch.float32 else x.dtype).pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


@pytest.mark.parametrize("rules", ["chefer", "attnlrp"])
def test_rms_norm_statistic_is_a_constant_and_any_other_use_of_it_is_an_error(rules):
    g = torch.Generator().manual_seed(10)
    x, r = torch.randn(2, 3, 4, generator=g, dtype=F64), torch.randn(2, 3, 4, generator=g, dtype=F64)
    weight = torch.nn.Parameter(torch.randn(4, generator=g, dtype=F64))
    (got,) = relevance_under(rules, lambda x: rms_norm(x, weight), [x], r)
    torch.testing.assert_close(got, r, rtol=0, atol=0)
    (gemma,) = relevance_under(rules, lambda x: rms_norm(x, 1.0 + weight.float()), [x], r)  # weights alone: a constant
    torch.testing.assert_close(gemma, r, rtol=0, atol=0)
    message = ("LRP treats a normalisation statistic \\(from pow\\(x, 2\\) of a tensor that carries relevance\\) as a "
               "constant that scales activations, but torch.Tensor.add uses it otherwise")  # fmt: skip
    with pytest.raises(RuntimeError, match=message):
        relevance_under(rules, lambda x: x + x.pow(2), [x], r)
    with pytest.raises(RuntimeError, match="but torch.exp uses it otherwise"):
        relevance_under(rules, lambda x: x * torch.exp(x.pow(2).mean(-1, keepdim=True)), [x], r)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def test_rotary_embedding_where_and_masked_fill_route_relevance():
    g = torch.Generator().manual_seed(11)
    q, r = torch.randn(2, 2, 3, 4, generator=g, dtype=F64), torch.randn(2, 2, 3, 4, generator=g, dtype=F64)
    angle = torch.randn(1, 1, 3, 4, generator=g, dtype=F64)
    cos, sin = angle.cos(), angle.sin()
    (chefer,) = relevance_under("chefer", lambda q: q * cos + rotate_half(q) * sin, [q], r)
    torch.testing.assert_close(chefer.sum((1, 2, 3)), r.sum((1, 2, 3)), rtol=1e-6, atol=0)  # the Add rule conserves
    (attnlrp,) = relevance_under("attnlrp", lambda q: q * cos + rotate_half(q) * sin, [q], r)
    leaf = q.clone().requires_grad_()  # a linear map: epsilon-LRP is x ⊙ Jᵀ(R / z)
    z = leaf * cos + rotate_half(leaf) * sin
    torch.testing.assert_close(attnlrp, q * torch.autograd.grad(z, leaf, grad_outputs=epsilon_share(r, z.detach()))[0])
    keep = torch.rand(2, 2, 3, 4, generator=g) > 0.5
    for rules in ("chefer", "attnlrp"):
        (kept,) = relevance_under(rules, lambda q: torch.where(keep, q, 0.0), [q], r)
        torch.testing.assert_close(kept, r * keep)
        (filled,) = relevance_under(rules, lambda q: q.masked_fill(~keep, -1e4), [q], r)
        torch.testing.assert_close(filled, r * keep)


def test_data_through_weights_is_a_leaf_and_gpt2_s_addmm_is_a_linear_layer():
    g = torch.Generator().manual_seed(12)
    table = torch.nn.Parameter(torch.randn(10, 4, generator=g, dtype=F64))
    weight, bias = torch.nn.Parameter(torch.randn(4, 5, generator=g, dtype=F64)), torch.nn.Parameter(torch.randn(5, generator=g, dtype=F64))
    ids = torch.tensor([[1, 2, 3]])
    with lrp_mode(torch.nn.Module()):
        looked_up = F.embedding(ids, table)
        out = torch.addmm(bias, looked_up.view(-1, 4), weight)
    assert looked_up.requires_grad and looked_up.is_leaf
    r = torch.randn(3, 5, generator=g, dtype=F64)
    (got,) = torch.autograd.grad(out, looked_up, grad_outputs=r)
    (linear,) = relevance_through(lambda x: F.linear(x, weight.t(), bias), [looked_up.detach().view(-1, 4)], r)
    torch.testing.assert_close(got.view(-1, 4), linear)


#: the modules whose outputs are the network's inputs in embedding space: token, position and
#: type embeddings, and the projections of the visual features and box coordinates.
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


@pytest.mark.parametrize("rules", ["chefer", "attnlrp"])
def test_relevance_at_the_inputs_plus_what_the_rules_kept_is_the_answer_s(family, rules):
    """Per example, the relevance reaching the inputs plus what the rules kept (``absorbed``) is
    the one-hot's 1 to 1e-9 in float64: no relevance leaks through routes, statistics or leaves.
    Under AttnLRP the softmax rule keeps a visible part (it is not conservative; the tiny
    models' biases are 0, so theirs is nil); under Chefer's, the rules keep only the
    stabiliser's and alpha-1-beta-0's drops (≤ 1e-6)."""
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=3, dtype=F64)
    for row in range(3):
        absorbed = {}
        total = input_relevance(adapter, alone(batch, row), rules=rules, absorbed=absorbed)[0]
        kept = sum(absorbed.values())
        torch.testing.assert_close(total + kept, torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-9)
        if rules == "chefer":
            assert abs(kept) < 1e-6
        else:
            assert abs(absorbed["softmax"]) > 1e-2 and set(absorbed) <= {"linear", "add", "matmul", "softmax", "layer_norm", "sum"}
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
