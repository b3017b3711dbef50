"""``exact``, ``grad_abs`` and ``fisher`` against references written without headlens' scoring."""

import copy

import pytest
import torch

import headlens
from headlens.adapters import adapter_for
from headlens.edits import attention_function, capture, intercept
from headlens.scoring import score_batch, score_capture

from conftest import hooks_left, tiny_adapter, tiny_batch
from helpers import MODELS, finite_difference_gate_gradients, text_model

F64 = torch.float64
VALUES = ("value", "v_lin", "v_proj")  # the value projection's name, per family


def zero_head(model, site, head, heads):
    """A copy of ``model`` whose head's value projection rows are zero, so that its slice of the
    output projection's input (A·V) is 0; on plain eager attention with no hook."""
    model = copy.deepcopy(model)
    attention_function.select(model.config)  # eager attention, no hook (ViT's own softmaxes in float32)
    module = model.get_submodule(site.module)
    if not any(hasattr(module, name) for name in VALUES):  # LXMERT/VisualBERT sites sit below the attention
        module = model.get_submodule(site.module.rsplit(".", 1)[0])
    value = next(getattr(module, name) for name in VALUES if hasattr(module, name))
    size = value.out_features // heads
    with torch.no_grad():
        value.weight[head * size : (head + 1) * size] = 0
        value.bias[head * size : (head + 1) * size] = 0
    return model


@pytest.mark.parametrize("kind", ["bert", "distilbert", "vit"])
def test_exact_equals_one_forward_per_head_with_the_head_zeroed_by_hand(kind):
    make, make_inputs = MODELS[kind]
    adapter = adapter_for(make())
    inputs = make_inputs()
    scores = headlens.score(adapter, inputs, "exact", rows=10)  # chunks cut across examples and heads
    with torch.no_grad():
        unpruned = adapter.logits(inputs)
    target = adapter.predict(unpruned)[:, None]
    for s, site in enumerate(adapter.sites):
        for h in range(adapter.num_heads):
            with torch.no_grad():
                ablated = adapter_for(zero_head(adapter.model, site, h, adapter.num_heads)).logits(inputs)
            expected = (unpruned.gather(1, target) - ablated.gather(1, target))[:, 0]
            torch.testing.assert_close(scores[:, s, h], expected, rtol=1e-9, atol=1e-12)
    assert scores.abs().min() > 0 and hooks_left(adapter.model) == [] and attention_function.attached() == 0


def test_exact_equals_hand_zeroed_heads_on_the_multimodal_families(family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=2, dtype=F64)
    scores = headlens.score(adapter, batch, "exact", rows=5)
    with torch.no_grad():
        unpruned = adapter.logits(batch.inputs)
    target = adapter.predict(unpruned)[:, None]
    modules = [s.module for s in adapter.sites]
    unshared = [(i, s) for i, s in enumerate(adapter.sites) if modules.count(s.module) == 1]  # LXMERT's cross sites share one
    for index, site in unshared[::5]:
        head = index % adapter.num_heads
        with torch.no_grad():
            ablated = adapter_for(zero_head(adapter.model, site, head, adapter.num_heads)).logits(batch.inputs)
        torch.testing.assert_close(scores[:, index, head], (unpruned.gather(1, target) - ablated.gather(1, target))[:, 0],
                                   rtol=1e-9, atol=1e-12)  # fmt: skip


def test_exact_under_gates_measures_from_the_gated_model_and_gives_gated_heads_zero():
    adapter = adapter_for(text_model("bert"))
    inputs = MODELS["bert"][1]()
    gate = torch.ones(4, 2, 4, dtype=F64)
    gate[0, 0, 1] = gate[1, 1, 3] = gate[2, 0, 0] = 0
    target = torch.tensor([0, 1, 2, 1])
    _, scores = score_batch(adapter, inputs, ["exact"], gate=gate, target=target, rows=7)
    base = headlens.edits.gates
    for s in range(2):
        for h in range(4):
            off = gate.clone()
            off[:, s, h] = 0
            with torch.no_grad(), base(adapter, gate):
                before = adapter.logits(inputs).gather(1, target[:, None])[:, 0]
            with torch.no_grad(), base(adapter, off):
                after = adapter.logits(inputs).gather(1, target[:, None])[:, 0]
            torch.testing.assert_close(scores["exact"][:, s, h], before - after, rtol=1e-9, atol=1e-12)
    assert scores["exact"][0, 0, 1] == 0 and scores["exact"][1, 1, 3] == 0 and scores["exact"][2, 0, 0] == 0


def test_exact_needs_the_adapter_and_inputs():
    adapter = adapter_for(text_model("bert"))
    cap = capture(adapter, MODELS["bert"][1](), grad=False)
    with pytest.raises(ValueError, match="the exact method runs gated forward passes: give adapter= and inputs="):
        score_capture(cap, "exact")


class One:
    """A batch of one example's inputs (what finite_difference_gate_gradients reads)."""

    def __init__(self, inputs):
        self.inputs = inputs

    def __len__(self):
        return 1


def test_fisher_is_the_squared_finite_difference_of_the_gates():
    adapter = adapter_for(text_model("bert"))
    inputs = MODELS["bert"][1]()
    fisher = headlens.score(adapter, inputs, "fisher")
    for row in (0, 1):
        single = {k: v[row : row + 1] for k, v in inputs.items()}
        with torch.no_grad():
            target = adapter.predict(adapter.logits(single))
        derivative = finite_difference_gate_gradients(adapter, One(single), target)[0]
        torch.testing.assert_close(fisher[row], derivative.square(), rtol=1e-5, atol=1e-12)


def test_grad_abs_is_the_mean_of_absolute_finite_differences_of_each_attention_weight():
    """Scale one probability A[s,h,i,j] by (1 ± ε), one row per position and sign: the central
    difference is ∂z/∂A · A there; grad_abs is the mean of its absolute values, grad of the signed ones."""
    adapter = adapter_for(text_model("bert"))
    inputs = {k: v[:1, :5] for k, v in MODELS["bert"][1]().items()}
    with torch.no_grad():
        target = adapter.predict(adapter.logits(inputs))
    eps, sites, heads, n = 1e-6, 2, 4, 5
    cells = sites * heads * n * n
    factors = torch.ones(2, cells, sites, heads, n, n, dtype=F64)
    for sign, row in ((1, 0), (-1, 1)):
        factors[row].view(cells, -1)[torch.arange(cells), torch.arange(cells)] += sign * eps
    factors = factors.view(2 * cells, sites, heads, n, n)
    with torch.no_grad(), intercept(adapter, lambda index, probs: probs * factors[:, index]):
        values = adapter.logits({k: v.expand(2 * cells, -1) for k, v in inputs.items()})[:, target[0]].view(2, cells)
    positions = ((values[0] - values[1]) / (2 * eps)).view(sites, heads, n, n)
    grad_abs, grad = headlens.score(adapter, inputs, "grad_abs")[0], headlens.score(adapter, inputs, "grad")[0]
    torch.testing.assert_close(grad_abs, positions.abs().mean(dim=(-2, -1)), rtol=1e-5, atol=1e-10)
    torch.testing.assert_close(grad, positions.mean(dim=(-2, -1)), rtol=1e-5, atol=1e-10)
    assert (grad_abs > grad.abs() * 1.01).any()  # signs cancel somewhere


def test_pictures_can_rank_heads_by_exact():
    from headlens.explain import explain

    adapter = tiny_adapter("visual_bert", F64)
    batch = tiny_batch(adapter, size=2, dtype=F64)
    explained = explain(adapter, batch, [0.0, 0.5], score_method="exact", predict=False)
    torch.testing.assert_close(explained.head_scores, headlens.score(adapter, batch, "exact"), rtol=0, atol=0)
