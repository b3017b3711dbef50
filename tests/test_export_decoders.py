"""Physical pruning of decoders: query heads and key/value groups removed, reloaded through
load_model, logits equal to the gated model's."""

import pytest
import torch

from headlens.adapters import adapter_for
from headlens.edits import gates
from headlens.export import export
from headlens.export_decoders import kept_layout
from headlens.models import load_model

from decoders import DECODERS, F64, decoder_adapter, decoder_batch, token_lists


def test_kept_layout_copies_a_group_that_keeps_more_query_heads():
    assert kept_layout(8, 2, [4, 5, 6, 7]) == ([0, 1, 2, 3], [0], 4)  # a whole group gone
    assert kept_layout(8, 2, [0]) == ([1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 1, 1, 1, 1], 1)  # 3 and 4 kept: r = 1
    assert kept_layout(6, 3, [0, 1]) == ([2, 3, 4, 5], [1, 2], 2)
    assert kept_layout(4, 2, [0, 1, 2, 3]) == ([0], [0], 1)  # silenced: one head left


#: per case, the heads gated at site 0 and site 1 (4 query heads; 2 key/value heads but GPT-2's 4).
CASES = {
    "a whole group and one head of a group": ([2, 3], [0]),
    "every head of a site": ([0, 1, 2, 3], []),
    "one head per group": ([1, 3], [0, 2]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("family", sorted(DECODERS))
def test_an_exported_decoder_computes_what_the_gated_one_computes(tmp_path, family, case):
    adapter = decoder_adapter(family)
    keep = torch.ones(2, 4, dtype=F64)
    for site, heads in enumerate(CASES[case]):
        keep[site, heads] = 0
    report = export(adapter, keep, tmp_path / "pruned")
    pruned = adapter_for(load_model("decoder", str(tmp_path / "pruned")).to(F64))
    batch = decoder_batch(adapter, token_lists(), "right")
    with torch.no_grad(), gates(adapter, keep.expand(4, -1, -1)):
        expected = adapter.logits(batch.inputs)
    with torch.no_grad():
        torch.testing.assert_close(pruned.logits(batch.inputs), expected, rtol=1e-10, atol=1e-12)
        if family != "gemma2":  # (sdpa refuses Gemma 2's soft-capping)
            pruned.model.config._attn_implementation = "sdpa"  # transformers' own attention reads the new groups
            torch.testing.assert_close(pruned.logits(batch.inputs), expected, rtol=1e-9, atol=1e-10)
        assert (expected - adapter.logits(batch.inputs)).abs().max() > 1e-4
    assert report["parameters_after"] < report["parameters_before"]
    shapes = {name: tuple(p.shape) for name, p in pruned.model.named_parameters()}
    if family == "gpt2":
        assert shapes["transformer.h.0.attn.c_attn.weight"] == (32, 3 * 8 * int(keep[0].sum().clamp(min=1)))
        return
    prefix = "model.layers.{}.self_attn.{}.weight"
    width = adapter.model.get_submodule(adapter.sites[0].module).head_dim
    expected_kv = {"a whole group and one head of a group": (1, 3), "every head of a site": (1, 2),
                   "one head per group": (2, 2)}[case]  # fmt: skip
    for site in range(2):
        assert shapes[prefix.format(site, "k_proj")][0] == expected_kv[site] * width
        assert shapes[prefix.format(site, "q_proj")][0] == max(int(keep[site].sum()), 1) * width
        assert shapes[prefix.format(site, "o_proj")][1] == max(int(keep[site].sum()), 1) * width
