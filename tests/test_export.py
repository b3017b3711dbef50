import json

import pytest
import torch

from headlens.cli import main
from headlens.export import effective_mask, export
from headlens.edits import gates
from headlens.models import load_model

from conftest import tiny_adapter, tiny_batch

F64 = torch.float64


def logits(model, inputs):
    out = model(**inputs)
    return out.question_answering_score if hasattr(out, "question_answering_score") else out.logits


@pytest.mark.parametrize("family", ["lxmert", "visual_bert"])
def test_exported_model_computes_what_the_gated_model_computes(tmp_path, family):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    generator = torch.Generator().manual_seed(2)
    keep = (torch.rand(adapter.num_sites, adapter.num_heads, generator=generator) > 0.5).to(F64)
    keep[0] = 0  # a whole site
    report = export(adapter.model, keep, tmp_path / "pruned")
    pruned = load_model(family, str(tmp_path / "pruned")).to(F64)
    effective = effective_mask(adapter, keep)
    with torch.no_grad(), gates(adapter, effective.expand(4, -1, -1)):
        expected = adapter.logits(batch.inputs)
    with torch.no_grad():
        torch.testing.assert_close(logits(pruned, batch.inputs), expected, rtol=1e-10, atol=1e-12)
        unpruned = adapter.logits(batch.inputs)
    assert not torch.allclose(expected, unpruned)
    assert report["parameters_after"] < report["parameters_before"]
    assert report["pruned_asked"] == int((keep == 0).sum())
    assert json.loads((tmp_path / "pruned" / "headlens_export.json").read_text()) == report
    sizes = {name: p.shape for name, p in pruned.named_parameters()}
    first = adapter.sites[0].module.rsplit(".", 1)[0] + ".query.weight"
    assert sizes[first][0] == adapter.model.config.hidden_size // adapter.num_heads  # one silenced head left


def test_shared_cross_attention_heads_go_only_when_every_direction_prunes_them():
    adapter = tiny_adapter("lxmert")
    names = adapter.site_names
    keep = torch.ones(adapter.num_sites, adapter.num_heads)
    keep[names.index("x.0.l2v"), 1] = 0  # pruned in one direction only
    keep[names.index("x.0.l2v"), 2] = keep[names.index("x.0.v2l"), 2] = 0  # in both
    keep[names.index("x.1.l2v"), 3] = 0  # the last cross layer's other direction is no site
    effective = effective_mask(adapter, keep)
    assert effective[names.index("x.0.l2v")].tolist() == [1, 1, 0, 1]
    assert effective[names.index("x.0.v2l")].tolist() == [1, 1, 0, 1]
    assert effective[names.index("x.1.l2v")].tolist() == [1, 1, 1, 0]


def test_export_command(tmp_path, capsys):
    out = tmp_path / "run"
    # "ours" is the alias of grad: the ranking is looked up under the name asked for
    assert main(["export", "--preset", "tiny-visual_bert", f"out_dir={out}", "progress=false", "export.fraction=0.4",
                 "export.method=ours", "data.score_examples=8"]) == 0  # fmt: skip
    report = json.loads((out / "model_pruned" / "headlens_export.json").read_text())
    assert report["pruned_asked"] == 4  # int(0.4 · 12)
    assert "model_pruned" in capsys.readouterr().out
    assert main(["export", "--preset", "tiny-visual_bert", f"out_dir={out}", "export.fraction=1.5"]) == 2
