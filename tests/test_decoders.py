"""Decoder LLMs: last-real-token logits, causal means, batch = per-example under left and right
padding for every family and method, gates, finite differences, LRP through the adapter, no
leftover edits."""

import pytest
import torch

from headlens.edits import attention_function, capture, eval_mode, gates, lrp_mode
from headlens.edits.lrp import RULES
from headlens.errors import InputError
from headlens.scoring import METHODS, score_batch

from conftest import hooks_left
from decoders import DECODERS, F64, decoder, decoder_adapter, decoder_batch, token_lists
from helpers import finite_difference_gate_gradients, input_relevance

FAMILIES = sorted(DECODERS)
#: where a decoder's relevance stops: its token (and GPT-2's position) embeddings.
EMBEDDINGS = {"gpt2": ["transformer.wte", "transformer.wpe"]}


def alone(adapter, tokens):
    return decoder_batch(adapter, [tokens])


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_are_the_next_token_logits_at_the_last_real_token_whatever_the_padding(family):
    adapter = decoder_adapter(family)
    tokens = token_lists()
    with torch.no_grad():
        left = adapter.logits(decoder_batch(adapter, tokens, "left", extra=1).inputs)
        right = adapter.logits(decoder_batch(adapter, tokens, "right", extra=1).inputs)
        assert left.shape == (4, 50)
        torch.testing.assert_close(left, right, rtol=0, atol=1e-10)
        for row, seq in enumerate(tokens):
            own = adapter.model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1]  # transformers' eager
            torch.testing.assert_close(left[row], own, rtol=0, atol=1e-5)  # (it rounds its softmax to float32)
            torch.testing.assert_close(left[row], adapter.logits(alone(adapter, seq).inputs)[0], rtol=0, atol=1e-10)
        labels = decoder_adapter(family, classes=[7, 3, 11])
        assert labels.num_answers == 3
        torch.testing.assert_close(labels.logits(decoder_batch(labels, tokens).inputs), right[:, [7, 3, 11]],
                                   rtol=0, atol=1e-10)  # fmt: skip
    with pytest.raises(InputError, match=r"decoder: class token ids must be a non-empty list in \[0, 50\), got \[3, 50\]"):
        decoder_adapter(family, classes=[3, 50])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_batch_equals_per_example_under_left_and_right_padding(family):
    """A padded batch (either side, an extra padded column) scores every example as it scores
    alone, for every method: the causal means run over the pairs that exist."""
    adapter = decoder_adapter(family)
    tokens = token_lists()
    methods = sorted(METHODS)
    with eval_mode(adapter.model):
        batches = [decoder_batch(adapter, tokens, side, extra=1) for side in ("left", "right")]
        found = [score_batch(adapter, b.inputs, methods, ids=b.ids)[1] for b in batches]
        singles = [score_batch(adapter, alone(adapter, seq).inputs, methods, ids=[row])[1]
                   for row, seq in enumerate(tokens)]  # fmt: skip
    for method in methods:
        scores = found[0][method]
        assert scores.shape == (4, 2, 4) and torch.isfinite(scores).all() and scores.std() > 0
        torch.testing.assert_close(found[1][method], scores, rtol=1e-8, atol=1e-10)
        for row in range(4):
            torch.testing.assert_close(singles[row][method][0], scores[row], rtol=1e-8, atol=1e-10)
    assert hooks_left(adapter.model) == [] and attention_function.attached() == 0


def existing_pairs(length: int, window: int | None) -> int:
    return sum(min(i + 1, window or length) for i in range(length))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_pairs_a_mean_divides_by_are_those_the_mask_lets_through(family):
    """The causal triangle of the real tokens (a band under a sliding window), counted
    independently from where the captured maps are non-zero."""
    adapter = decoder_adapter(family)
    batch = decoder_batch(adapter, token_lists(), "left", extra=2)
    cap = capture(adapter, batch.inputs, grad=False)
    windows = adapter.windows
    if family in ("mistral", "gemma2", "gemma3"):
        assert 3 in windows
    for site, (attn, pairs, window) in enumerate(zip(cap.attn, cap.pairs, windows)):
        real = cap.query[site].mask[:, None, :, None]
        nonzero = ((attn > 0) & real).sum((-2, -1)).double()  # [batch, heads]
        expected = torch.tensor([existing_pairs(n, window) for n in (6, 3, 5, 1)], dtype=F64)
        torch.testing.assert_close(pairs.double(), expected, rtol=0, atol=0)
        torch.testing.assert_close(nonzero, expected[:, None].expand(4, 4), rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_grad_and_taylor_equal_finite_differences_of_the_gates(family):
    """Float64 central differences of the gated model: grad is ∂z/∂gate divided by the pairs that
    exist (counted here from the length and the window), taylor its absolute value. RMSNorm
    computes in float32 whatever the model's precision (every family but GPT-2), so there the
    differences take a wider step and tolerance; the autograd derivative of real gate leaves is
    checked exactly for every family."""
    adapter = decoder_adapter(family)
    tokens = token_lists(3)
    batch = decoder_batch(adapter, tokens, "left")
    cap, scores = score_batch(adapter, batch.inputs, ["grad", "taylor"])
    step, rtol, atol = (1e-3, 1e-2, 1e-4) if family != "gpt2" else (1e-6, 1e-5, 1e-9)
    for row, seq in enumerate(tokens):
        single = alone(adapter, seq)
        with torch.no_grad():
            target = adapter.logits(single.inputs).argmax(-1)
        derivative = finite_difference_gate_gradients(adapter, single, target, eps=step)[0]
        pairs = torch.tensor([existing_pairs(len(seq), w) for w in adapter.windows], dtype=F64)
        torch.testing.assert_close(scores["grad"][row], derivative / pairs[:, None], rtol=rtol, atol=atol)
        torch.testing.assert_close(scores["taylor"][row], derivative.abs(), rtol=rtol, atol=atol)
    mask = torch.ones(3, 2, 4, dtype=F64, requires_grad=True)
    with gates(adapter, mask):
        logits = adapter.logits(batch.inputs)
    (gate_grad,) = torch.autograd.grad(logits.gather(1, cap.target[:, None]).sum(), mask)
    torch.testing.assert_close(scores["taylor"], gate_grad.abs(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_per_example_gates_equal_each_example_gated_alone(family):
    adapter = decoder_adapter(family)
    tokens = token_lists()
    batch = decoder_batch(adapter, tokens, "left", extra=1)
    mask = (torch.rand(4, 2, 4, generator=torch.Generator().manual_seed(3)) > 0.5).to(F64)
    with torch.no_grad(), gates(adapter, mask):
        together = adapter.logits(batch.inputs)
    with torch.no_grad():
        ungated = adapter.logits(batch.inputs)
        for row, seq in enumerate(tokens):
            with gates(adapter, mask[row : row + 1]):
                torch.testing.assert_close(together[row], adapter.logits(alone(adapter, seq).inputs)[0],
                                           rtol=0, atol=1e-10)  # fmt: skip
    assert (together - ungated).abs().max() > 1e-3
    assert hooks_left(adapter.model) == [] and attention_function.attached() == 0


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_lrp_mode_computes_the_models_own_logits(family, implementation):
    """LRP mode runs headlens' attention function (and switches sdpa to it): grouped key/value
    heads, Gemma 2's logit soft-capping and the sliding windows give the model's own logits (in
    float32: transformers' eager attention turns float64 rows without a key into NaN)."""
    model = decoder(family, torch.float32)  # the reference: transformers' eager attention (sdpa refuses soft-capping)
    adapter = decoder_adapter(family, torch.float32)
    adapter.model.load_state_dict(model.state_dict())
    adapter.model.config._attn_implementation = implementation
    batch = decoder_batch(adapter, token_lists(), "right")
    with torch.no_grad():
        own = model(**batch.inputs, use_cache=False).logits
    rows = adapter.pooled_row(batch.inputs)
    for rules in RULES:
        with torch.enable_grad(), lrp_mode(adapter.model, rules=rules):
            found = adapter.logits(batch.inputs)
        torch.testing.assert_close(found.detach(), own[torch.arange(4), rows], rtol=0, atol=1e-5)
    assert adapter.model.config._attn_implementation == implementation


@pytest.mark.parametrize("family", FAMILIES)
def test_lrp_relevance_through_the_adapter_is_conserved_per_example(family):
    """From a one-hot at the last real token's answer to the embeddings of a padded batch, in
    float64: Chefer's rules keep every example's 1 (to the stabiliser); AttnLRP's books balance
    (what reaches the embeddings plus what the rules kept)."""
    adapter = decoder_adapter(family)
    batch = decoder_batch(adapter, token_lists(3), "left", extra=1)
    modules = EMBEDDINGS.get(family, ["model.embed_tokens"])
    torch.testing.assert_close(input_relevance(adapter, batch, modules), torch.ones(3, dtype=F64), rtol=0, atol=1e-6)
    absorbed = {}
    total = input_relevance(adapter, batch, modules, "attnlrp", absorbed).sum()
    # (to 1e-7: RMSNorm's own cast to float32 rounds the relevance passing through it)
    torch.testing.assert_close(total + sum(absorbed.values()), torch.tensor(3.0, dtype=F64), rtol=0, atol=1e-7)
    assert hooks_left(adapter.model) == []


class Boom(RuntimeError):
    pass


def gated_backward(adapter, batch):
    with gates(adapter, torch.ones(4, 2, 4, dtype=F64)):
        adapter.logits(batch.inputs).sum().backward()


@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_no_edit_is_left_after_an_exception(family, where):
    """A failure inside the forward or the backward of a capture (gradient, LRP) or of a gated
    pass leaves no hook, no attached attention hook and the model's own attention function."""
    adapter = decoder_adapter(family)
    adapter.model.config._attn_implementation = "sdpa"
    batch = decoder_batch(adapter, token_lists(), "left")
    layer = adapter.model.get_submodule(adapter.sites[1].module)

    def fail(module, args, output):
        if where == "forward":
            raise Boom
        output[0].register_hook(lambda grad: (_ for _ in ()).throw(Boom()))

    runs = (
        lambda: capture(adapter, batch.inputs),
        lambda: capture(adapter, batch.inputs, grad=False, relevance=True, lrp_rules=RULES),
        lambda: gated_backward(adapter, batch),
    )
    for run in runs:
        handle = layer.register_forward_hook(fail)
        try:
            with pytest.raises(Boom), eval_mode(adapter.model):
                run()
        finally:
            handle.remove()
        assert hooks_left(adapter.model) == [] and attention_function.attached() == 0
        assert adapter.model.config._attn_implementation == "sdpa"


def attention_without_group(module, group: int, real: torch.Tensor):
    """A hand-written forward of a Llama-style attention module from which key/value head
    ``group`` is removed: its K/V projection rows, its query heads' ``q_proj`` rows and their
    ``o_proj`` columns go; causal softmax over the real keys ``real`` (``bool[batch, n]``)."""
    d = module.head_dim
    heads, kv = module.config.num_attention_heads, module.config.num_key_value_heads
    size = heads // kv
    kept_q = [h for h in range(heads) if h // size != group]
    kept_kv = [g for g in range(kv) if g != group]

    def rows(kept):
        return torch.cat([torch.arange(h * d, (h + 1) * d) for h in kept])

    def project(linear, kept):
        bias = None if linear.bias is None else linear.bias[rows(kept)]
        return torch.nn.functional.linear(hidden, linear.weight[rows(kept)], bias)

    def rotate(x, cos, sin):
        return x * cos + torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1) * sin

    def forward(hidden_states, position_embeddings=None, attention_mask=None, **kwargs):
        nonlocal hidden
        hidden = hidden_states
        batch, n, _ = hidden.shape
        q, k, v = (project(linear, kept).view(batch, n, -1, d).transpose(1, 2)
                   for linear, kept in ((module.q_proj, kept_q), (module.k_proj, kept_kv), (module.v_proj, kept_kv)))
        cos, sin = (t[:, None] for t in position_embeddings)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        allowed = torch.ones(n, n, dtype=torch.bool).tril() & real[:, None, :]
        outputs = []
        for index, head in enumerate(kept_q):
            g = kept_kv.index(head // size)
            logits = (q[:, index] @ k[:, g].transpose(-1, -2) * module.scaling).masked_fill(~allowed, float("-inf"))
            outputs.append(torch.softmax(logits, -1).nan_to_num(0.0) @ v[:, g])  # (a padded row sees no key)
        mixed = torch.stack(outputs, 2).reshape(batch, n, -1)
        return torch.nn.functional.linear(mixed, module.o_proj.weight[:, rows(kept_q)], module.o_proj.bias), None

    hidden = None
    return forward


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_gating_a_kv_group_equals_removing_its_projections_by_hand(family):
    adapter = decoder_adapter(family)
    batch = decoder_batch(adapter, token_lists(), "right")
    real = batch.inputs["attention_mask"].bool()
    with torch.no_grad():
        unpruned = adapter.logits(batch.inputs)
    for site_index, site in enumerate(adapter.sites):
        module = adapter.model.get_submodule(site.module)
        for group in range(adapter.kv_heads):
            mask = torch.ones(4, 2, 4, dtype=F64)
            mask[:, site_index, 2 * group : 2 * group + 2] = 0
            with torch.no_grad(), gates(adapter, mask):
                gated = adapter.logits(batch.inputs)
            module.forward = attention_without_group(module, group, real)
            try:
                with torch.no_grad():
                    by_hand = adapter.logits(batch.inputs)
            finally:
                del module.forward
            torch.testing.assert_close(gated, by_hand, rtol=0, atol=1e-10)
            assert (gated - unpruned).abs().max() > 1e-3


def test_kv_group_curves_in_both_protocols_and_multi_query_refused():
    """A prompt-classification sweep over key/value groups: the pruned counts are of the
    4 groups, and a curve's accuracies are those of its masks applied by hand."""
    import headlens
    from headlens.masks import head_masks
    from decoders import TokenExamples

    adapter = decoder_adapter("llama", torch.float32, classes=[5, 9, 13])
    tokens = token_lists(8, seed=1)
    data = TokenExamples(tokens, [0, 1, 2, 0, 1, 2, 0, 1], 3)
    score_data = TokenExamples(token_lists(6, seed=2), [0] * 6, 3)
    levels = [0.0, 0.5, 0.75]
    result = headlens.sweep(adapter, data, score_data, methods=["grad", "random"], units=["kv_group", "head"],
                            protocols=["per_example", "global"], levels=levels, batch_size=3, progress=False)  # fmt: skip
    assert result.kv_heads == 2 and result.to_dict()["kv_heads"] == 2
    curves = {curve.label: curve for curve in result.curves}
    assert len(curves) == 16
    assert curves["grad/kv_group/negative/global"].pruned == [0, 2, 3]
    assert curves["grad/head/negative/global"].pruned == [0, 4, 6]
    batch = adapter.examples(data).collate(range(8))
    labels = batch.labels.argmax(-1)
    scores = headlens.score(adapter, batch, "grad")
    keep = head_masks(scores, levels, "negative", "kv_group", "prune_floor", adapter.kv_heads)  # [8, L, 2, 4]
    assert ((keep.reshape(8, 3, 2, 2, 2).sum(-1) % 2) == 0).all()  # whole groups only
    for level in range(3):
        with torch.no_grad(), gates(adapter, keep[:, level]):
            correct = (adapter.logits(batch.inputs).argmax(-1) == labels).float().mean().item()
        assert curves["grad/kv_group/negative/per_example"].accuracy[level] == pytest.approx(100 * correct)
    multi_query = decoder_adapter("llama", torch.float32, classes=[5, 9, 13], num_key_value_heads=1)
    with pytest.raises(InputError, match="unit kv_group: this model has one key/value head per site"):
        headlens.sweep(multi_query, data, methods=["grad"], units=["kv_group"], progress=False)


def test_units_are_validated_where_they_always_were():
    from headlens.config import ConfigError, load_config
    from headlens.sweep import SweepOptions

    assert load_config(["sweep.units=[head,kv_group]"]).sweep.units == ["head", "kv_group"]
    assert load_config(["export.unit=kv_group"]).export.unit == "kv_group"
    assert SweepOptions().units == ("head", "layer")  # kv_group only when asked for
    with pytest.raises(ConfigError, match=r"key 'sweep.units': \['kvgroup'\] is not a non-empty choice of head, layer, kv_group"):
        load_config(["sweep.units=[kvgroup]"])
    with pytest.raises(InputError, match=r"units: \['kvgroup'\] is not a non-empty choice of head, layer, kv_group"):
        SweepOptions(units=["kvgroup"])


@pytest.mark.parametrize("family", ["gemma2", "gpt2"])
def test_token_relevance_is_read_at_the_last_real_token_and_batch_equals_per_example(family):
    from headlens.relevance.maps import relevance_maps

    adapter = decoder_adapter(family)
    tokens = token_lists(3)
    batch = decoder_batch(adapter, tokens, "left", extra=1)
    for method in ("ours", "lrp", "rollout"):
        found = relevance_maps(adapter, batch.inputs, method)
        assert found.image is None and found.text.shape == (3, 7)
        for row, seq in enumerate(tokens):
            single = relevance_maps(adapter, alone(adapter, seq).inputs, method).text[0]
            torch.testing.assert_close(found.text[row, 7 - len(seq) :], single, rtol=1e-8, atol=1e-10)
            assert (found.text[row, : 7 - len(seq)] == 0).all() and single[-1] == 0  # padding; the read token itself
            assert len(seq) == 1 or single.abs().max() > 0
