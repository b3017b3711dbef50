import pytest
from transformers import LxmertConfig, VisualBertConfig

from headlens.adapters import adapter_for, sites_of
from headlens.adapters.lxmert import LXMERT
from headlens.adapters.visual_bert import VISUAL_BERT
from headlens.sites import Site, parse_site_name, site_name

from conftest import tiny_adapter, tiny_batch


def test_name_grammar_round_trips_and_rejects_bad_names():
    assert site_name("x", 2, "l2v") == "x.2.l2v"
    assert parse_site_name("lang.3.self") == ("lang", 3, "self")
    assert parse_site_name("x.4.vis_self") == ("x", 4, "vis_self")
    for bad in ("x.l2v", "x.2", "X.2.l2v", "x.-1.l2v", "x.2.l2v.extra", ""):
        with pytest.raises(ValueError, match="invalid site name"):
            parse_site_name(bad)


def test_site_rejects_unknown_stream():
    with pytest.raises(ValueError, match="unknown stream 'audio'"):
        Site("enc.0.self", "m", 0, "audio", "text", 4)


def test_lxmert_full_size_has_its_32_sites_in_ranking_order():
    sites = sites_of(LXMERT, LxmertConfig())  # 9 language, 5 cross, 5 vision layers
    names = [s.name for s in sites]
    expected = (
        [f"lang.{i}.self" for i in range(9)]
        + [n for i in range(5) for n in (f"x.{i}.l2v", f"x.{i}.lang_self")]
        + [f"vis.{i}.self" for i in range(5)]
        + [n for i in range(4) for n in (f"x.{i}.v2l", f"x.{i}.vis_self")]
    )
    assert names == expected
    assert len(sites) * 12 == 384
    # The shared cross-attention module serves two sites, by call order.
    l2v, v2l = sites[names.index("x.2.l2v")], sites[names.index("x.2.v2l")]
    assert l2v.module == v2l.module and (l2v.call, v2l.call) == (0, 1)
    assert (l2v.query, l2v.key, v2l.query, v2l.key) == ("text", "image", "image", "text")
    assert "x.4.v2l" not in names and "x.4.vis_self" not in names
    assert all(s.layer == int(s.name.split(".")[1]) for s in sites)


def test_visual_bert_full_size_has_12_joint_self_attention_sites():
    sites = sites_of(VISUAL_BERT, VisualBertConfig())
    assert [s.name for s in sites] == [f"enc.{i}.self" for i in range(12)]
    assert {(s.query, s.key, s.heads) for s in sites} == {("joint", "joint", 12)}


def test_every_site_module_receives_that_sites_attention_probabilities(family):
    """Each site's module gets ``[batch, heads, query positions, key positions]`` rows that sum to 1."""
    import torch

    adapter = tiny_adapter(family)
    batch = tiny_batch(adapter, size=3)
    streams = adapter.streams(batch.inputs)
    seen, handles = {}, []
    for site in adapter.sites:
        module = adapter.model.get_submodule(site.module)
        hook = lambda m, args, name=site.name: seen.setdefault(name, []).append(args[0].detach())  # noqa: E731
        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            adapter.logits(batch.inputs)
    finally:
        for handle in handles:
            handle.remove()
    for site in adapter.sites:
        probabilities = seen[site.name][site.call]
        size = {name: stream.mask.shape[1] for name, stream in streams.items()}
        assert probabilities.shape == (3, site.heads, size[site.query], size[site.key])
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(probabilities.shape[:-1]))
    assert adapter.num_heads == 4


def test_unsupported_model_error_lists_supported_classes():
    import torch

    with pytest.raises(TypeError, match="LxmertForQuestionAnswering.*VisualBertForQuestionAnswering"):
        adapter_for(torch.nn.Linear(2, 2))
