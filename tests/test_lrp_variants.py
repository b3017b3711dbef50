"""The AttnLRP variant, decoder ops, the float64 pass and how captures carry several relevances."""

import copy

import pytest
import torch
import transformers

import headlens
from headlens.adapters import adapter_for
from headlens.cli import main
from headlens.config import ConfigError, load_config
from headlens.errors import InputError
from headlens.explain import explain
from headlens.edits import capture
from headlens.pipeline import sweep_options
from headlens.edits.lrp import RULES, lrp_mode
from headlens.scoring import capture_needs, score_capture

from conftest import hooks_left, synthetic, tiny_adapter, tiny_batch
from helpers import MODELS, alone_inputs as alone, input_relevance

from decoders import BIASED, DECODERS, F64, decoder


def embeddings(dtype=F64, seed=0):
    return torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype).requires_grad_()


def decoder_relevance(model, rules, embeds, dtype=F64, absorbed=None):
    """Relevance reaching ``inputs_embeds`` (and GPT-2's position embeddings) from a one-hot at
    the predicted next token of the last position."""
    leaves = [embeds]
    hooks = []
    if isinstance(model, transformers.GPT2LMHeadModel):
        hooks.append(model.get_submodule("transformer.wpe").register_forward_hook(lambda m, i, o: leaves.append(o)))
    try:
        with torch.enable_grad(), lrp_mode(model, rules=rules, dtype=dtype, absorbed=absorbed):
            logits = model(inputs_embeds=embeds, use_cache=False).logits
    finally:
        for hook in hooks:
            hook.remove()
    one_hot = torch.zeros_like(logits)
    one_hot[:, -1].scatter_(-1, logits[:, -1].argmax(-1, keepdim=True), 1.0)
    return torch.autograd.grad(logits, leaves, grad_outputs=one_hot)


@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("family", sorted(DECODERS))
def test_decoder_relevance_is_conserved_to_the_input_embeddings(family, rules):
    """RMSNorm, the SiLU-gated MLP, rotary embeddings, grouped key/value heads, the causal (and
    sliding-window) softmax, soft-capping, GPT-2's Conv1D and LayerNorm, in float64: the relevance
    at the input embeddings plus what the rules kept is 1 to 1e-10. Chefer's rules conserve (to
    1e-6: the stabiliser). AttnLRP's keep what they keep by design: the softmax rule (the Taylor
    expansion without its zero-order term) always, the biases (epsilon rule) where there are
    some; everything else keeps only the stabiliser's ε (< 1e-4)."""
    model = decoder(family)
    absorbed = {}
    found = decoder_relevance(model, rules, embeddings(), absorbed=absorbed)
    total, kept = sum(f.sum() for f in found), sum(absorbed.values())
    torch.testing.assert_close(total + kept, torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-10)
    if rules == "chefer":
        torch.testing.assert_close(total, torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-6)
    else:
        biases = absorbed["linear"] + absorbed.get("layer_norm", 0.0)
        assert abs(absorbed["softmax"]) > 1e-2
        assert abs(biases) > 1e-3 if family in BIASED else abs(biases) < 1e-4
        assert abs(kept - absorbed["softmax"] - biases) < 1e-4
    assert hooks_left(model) == []


@pytest.mark.parametrize("kind", ["bert", "vit"])
def test_attnlrp_keeps_the_books_on_bert_and_vit(kind):
    make, inputs = MODELS[kind]
    adapter = adapter_for(make())
    embeddings_module = f"{'vit' if kind == 'vit' else 'bert'}.embeddings"
    examples = inputs()
    for row in range(2):
        absorbed = {}
        total = input_relevance(adapter, alone(examples, row), [embeddings_module], "attnlrp", absorbed)[0]
        torch.testing.assert_close(total + sum(absorbed.values()), torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-9)
        assert abs(absorbed["softmax"]) > 1e-2


@pytest.mark.parametrize("family", ["lxmert", "visual_bert"])
def test_a_float64_capture_equals_the_capture_of_a_float64_copy(family):
    adapter = tiny_adapter(family)  # float32
    batch = tiny_batch(adapter, size=3)
    cap = capture(adapter, batch.inputs, grad=False, relevance=True, lrp_rules=RULES, lrp_dtype="float64")
    double = adapter_for(copy.deepcopy(adapter.model).double())
    reference = capture(double, double.inputs(batch.fields), grad=False, relevance=True, lrp_rules=RULES)
    plain = capture(adapter, batch.inputs, grad=False, relevance=True, lrp_rules=RULES)
    assert cap.logits.dtype == torch.float32 and cap.attn[0].dtype == torch.float32
    for rules in RULES:
        moved = 0.0
        for got, expected, low in zip(cap.relevances[rules], reference.relevances[rules], plain.relevances[rules]):
            assert got.dtype == F64
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
            moved = max(moved, ((low.double() - expected).abs().max() / expected.abs().max()).item())
        assert moved > 1e-7  # float32 is measurably off
        scores = score_capture(cap, "lrp" if rules == "chefer" else rules)
        assert scores.dtype == torch.float32
        torch.testing.assert_close(scores, score_capture(reference, "lrp" if rules == "chefer" else rules).float(),
                                   rtol=0, atol=0)  # fmt: skip
    torch.testing.assert_close(headlens.score(adapter, batch, "attnlrp", lrp_dtype="float64"),
                               score_capture(cap, "attnlrp"), rtol=0, atol=0)  # fmt: skip


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_a_float64_pass_of_a_float32_decoder_equals_that_of_a_float64_copy(family):
    """Also where the model casts down on purpose (RMSNorm's ``.to(torch.float32)``, softmax's
    ``dtype``): in a float64 pass those casts are lifted, in the copy as in the original."""
    low = decoder(family).float()
    model = copy.deepcopy(low).double()
    for rules in RULES:
        got = decoder_relevance(low, rules, embeddings())
        expected = decoder_relevance(model, rules, embeddings())
        for a, b in zip(got, expected):
            assert a.dtype == F64
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("dtype", [None, "float64"])
@pytest.mark.parametrize("rules", RULES)
def test_the_backward_keeps_no_absolute_or_cast_copy_of_a_weight(rules, dtype):
    """Every weight-shaped tensor autograd saves for the backward is the weight itself: |W| is
    formed inside the backward and a float64 pass casts each weight only while its op runs."""
    adapter = tiny_adapter("lxmert")
    batch = tiny_batch(adapter, size=3)
    parameters = {p.data_ptr() for p in adapter.model.parameters()}
    shapes = {tuple(p.shape) for p in adapter.model.parameters() if p.dim() == 2}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with torch.enable_grad(), lrp_mode(adapter.model, rules=rules, dtype=dtype):
            adapter.logits(batch.inputs)
    weight_shaped = [t for t in saved if tuple(t.shape) in shapes]
    assert len(weight_shaped) > 20 and all(t.data_ptr() in parameters for t in weight_shaped)
    assert all(t.dtype == torch.float32 for t in weight_shaped)


def test_one_capture_holds_both_relevances_and_each_method_reads_its_own(family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=3, dtype=F64)
    needs = capture_needs(["lrp", "grad", "attnlrp"])
    assert needs == {"grad": True, "relevance": True, "lrp_rules": ("chefer", "attnlrp")}
    assert capture_needs(["attnlrp"]) == {"grad": False, "relevance": True, "lrp_rules": ("attnlrp",)}
    assert capture_needs(["grad"], ["relevance"]) == {"grad": True, "relevance": True, "lrp_rules": ("chefer",)}
    both = capture(adapter, batch.inputs, **needs)
    chefer = capture(adapter, batch.inputs, grad=False, relevance=True)
    assert set(both.relevances) == {"chefer", "attnlrp"} and set(chefer.relevances) == {"chefer"}
    assert all(torch.equal(a, b) for a, b in zip(both.relevance, chefer.relevance))
    lrp, attnlrp = score_capture(both, "lrp"), score_capture(both, "attnlrp")
    torch.testing.assert_close(lrp, headlens.score(adapter, batch, "lrp"), rtol=0, atol=0)
    torch.testing.assert_close(attnlrp, headlens.score(adapter, batch, "attnlrp"), rtol=0, atol=0)
    assert (lrp - attnlrp).abs().max() > 1e-3 * lrp.abs().max()  # the variants differ
    with pytest.raises(ValueError, match="the attnlrp method needs LRP relevance under the attnlrp rules: "
                                         "capture with relevance=True, lrp_rules='attnlrp'"):  # fmt: skip
        score_capture(chefer, "attnlrp")
    with pytest.raises(InputError, match="unknown LRP rules 'zennit'; valid: chefer, attnlrp"):
        capture(adapter, batch.inputs, relevance=True, lrp_rules="zennit")
    with pytest.raises(InputError, match="LRP precision 'float16' is not one of float32, float64"):
        capture(adapter, batch.inputs, relevance=True, lrp_dtype="float16")
    explained = explain(adapter, batch, levels=[0.0, 0.5], map_methods=("lrp",), score_method="attnlrp", predict=False)
    torch.testing.assert_close(explained.head_scores, attnlrp, rtol=0, atol=0)
    assert hooks_left(adapter.model) == []


def test_lrp_dtype_is_a_config_key_and_a_sweep_option(capsys):
    assert load_config([]).sweep.lrp_dtype == "float32"
    with pytest.raises(ConfigError, match="key 'sweep.lrp_dtype': \\['float16'\\] is not a non-empty choice of float32, float64"):
        load_config(["sweep.lrp_dtype=float16"])
    assert sweep_options(load_config(["sweep.lrp_dtype=float64"]), None).lrp_dtype == "float64"
    adapter = tiny_adapter("visual_bert")
    data = synthetic(adapter, 4, seed=0)
    result = headlens.sweep(adapter, data, methods=["attnlrp"], units=["head"], lrp_dtype="float64", progress=False)
    assert [c.method for c in result.curves] == ["attnlrp", "attnlrp"]
    with pytest.raises(ValueError, match="unknown lrp_dtype 'int8'; valid: None, float32, float64"):
        headlens.sweep(adapter, data, methods=["lrp"], lrp_dtype="int8", progress=False)
    assert main(["methods"]) == 0
    assert "attnlrp  the same under the AttnLRP rules (Achtibat et al. 2024)" in capsys.readouterr().out
