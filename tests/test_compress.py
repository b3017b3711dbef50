"""Retraining-free compression (Kwon et al. 2022): Fisher gradients, search, rearrangement,
least-squares tuning and the tuned export, on tiny float64 models."""

import itertools
import json

import numpy as np
import pytest
import torch

from headlens.cli import main
from headlens.compress import accuracies, compress, export_compressed, folded_copy
from headlens.compress import search as search_module
from headlens.compress.fisher import block_fisher, head_importance, loss_estimate, mask_gradients
from headlens.compress.search import rearrange_mask, search_mask
from headlens.compress.tuning import tune_scales
from headlens.edits import gates
from headlens.errors import InputError
from headlens.export import effective_mask, prune_heads, removed_heads
from headlens.models import load_model

from conftest import hooks_left, synthetic, tiny_adapter

F64 = torch.float64


def gated_logits(adapter, inputs, mask):
    batch = next(iter(inputs.values())).shape[0]
    with torch.no_grad(), gates(adapter, mask.to(F64).expand(batch, -1, -1)):
        return adapter.logits(inputs)


def test_mask_gradients_are_the_own_prediction_cross_entropy_gradients():
    adapter = tiny_adapter("visual_bert", F64)
    data = synthetic(adapter, 5, seed=1)
    found = mask_gradients(adapter, data, batch_size=2)  # batches of 2, 2 and 1: per-example rows
    batch = data.collate(range(5))
    predicted = gated_logits(adapter, batch.inputs, torch.ones(adapter.num_sites, adapter.num_heads)).argmax(-1)
    step = 1e-6
    for site, head in [(0, 1), (1, 3), (2, 0)]:
        moved = []
        for sign in (1, -1):
            mask = torch.ones(adapter.num_sites, adapter.num_heads, dtype=F64)
            mask[site, head] += sign * step
            logits = gated_logits(adapter, batch.inputs, mask)
            moved.append(torch.nn.functional.cross_entropy(logits, predicted, reduction="none"))
        torch.testing.assert_close(found[:, site, head], (moved[0] - moved[1]) / (2 * step), rtol=1e-6, atol=1e-9)
    assert found.abs().sum() > 0
    assert hooks_left(adapter.model) == []


def test_expected_fisher_rows_give_the_fisher_of_the_predictive_distribution():
    """Σ_rows g gᵀ = Σ_b J_bᵀ (diag p_b − p_b p_bᵀ) J_b, J_b = ∂z_b/∂m by autograd's jacobian."""
    adapter = tiny_adapter("visual_bert", F64)
    data = synthetic(adapter, 3, seed=6)
    rows = mask_gradients(adapter, data, batch_size=2, target="expected")
    assert rows.shape == (3 * adapter.num_answers, adapter.num_sites, adapter.num_heads)
    batch = data.collate(range(3))
    expected = torch.zeros(adapter.num_sites * adapter.num_heads, adapter.num_sites * adapter.num_heads, dtype=F64)
    for b in range(3):
        inputs = {key: value[b : b + 1] for key, value in batch.inputs.items()}

        def logits_of(mask):
            with gates(adapter, mask.view(1, adapter.num_sites, adapter.num_heads)):
                return adapter.logits(inputs)[0]

        ones = torch.ones(adapter.num_sites * adapter.num_heads, dtype=F64)
        jacobian = torch.autograd.functional.jacobian(logits_of, ones)  # [answers, sites · heads]
        p = torch.softmax(logits_of(ones).detach(), -1)
        expected += jacobian.T @ (torch.diag(p) - torch.outer(p, p)) @ jacobian
    flat = rows.flatten(1)
    torch.testing.assert_close(flat.T @ flat, expected, rtol=1e-8, atol=1e-12)
    block = block_fisher(rows)
    for s in range(adapter.num_sites):
        heads = slice(s * adapter.num_heads, (s + 1) * adapter.num_heads)
        torch.testing.assert_close(block[s], expected[heads, heads], rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="unknown Fisher target 'labels'; valid: predicted, expected"):
        mask_gradients(adapter, data, target="labels")


def test_search_removes_exactly_the_budget_least_important_first():
    importance = torch.rand(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    importance[1, 2] = importance[0, 0]  # a tie: the earlier head goes first
    for removed in range(13):
        keep = search_mask(importance, removed)
        assert int((keep == 0).sum()) == removed
        if 0 < removed < 12:
            assert importance[keep == 0].max() <= importance[keep == 1].min()
    order = torch.argsort(importance.flatten(), stable=True)
    assert search_mask(importance, 5).flatten()[order[:5]].sum() == 0
    with pytest.raises(ValueError, match="cannot remove 13 of 12 heads"):
        search_mask(importance, 13)


def brute_force_best(block, count):
    heads = block.shape[0]
    return min(block[list(s)][:, list(s)].sum().item() for s in itertools.combinations(range(heads), count))


@pytest.mark.parametrize("exhaustive", [True, False])
def test_rearrangement_never_increases_the_fisher_estimate(monkeypatch, exhaustive):
    if not exhaustive:  # the pairwise-swap path
        monkeypatch.setattr(search_module, "EXHAUSTIVE", 0)
    generator = torch.Generator().manual_seed(3)
    gradients = torch.randn(40, 3, 6, generator=generator, dtype=F64)
    gradients[:, :, 1] = -gradients[:, :, 0] + 0.05 * gradients[:, :, 1]  # heads 0 and 1 cancel
    block = block_fisher(gradients)
    torch.testing.assert_close(block[2], gradients[:, 2].T @ gradients[:, 2])
    for trial in range(5):
        keep = (torch.rand(3, 6, generator=generator) > 0.5).to(F64)
        rearranged = rearrange_mask(block, keep)
        assert torch.equal((rearranged == 0).sum(1), (keep == 0).sum(1))
        assert (loss_estimate(block, rearranged) <= loss_estimate(block, keep) + 1e-12).all()
        if exhaustive:
            for s in range(3):
                best = brute_force_best(block[s], int((keep[s] == 0).sum())) if (keep[s] == 0).any() else 0.0
                assert loss_estimate(block, rearranged)[s].item() == pytest.approx(best / 2, rel=1e-12)
    searched = search_mask(head_importance(block), 6)
    assert loss_estimate(block, rearrange_mask(block, searched)).sum() < loss_estimate(block, searched).sum()


def real_rows(adapter, inputs, site, value):
    return value[adapter.streams(inputs)[adapter.sites[site].query].mask]


def test_tuning_solves_the_least_squares_problem_of_the_first_site():
    """Site 0 sees the same input pruned or not, so its problem is built here from gated forwards
    alone: column h = the output module's pre-LayerNorm sum with only head h kept minus that with
    none, target = the unpruned sum minus that with none; numpy's float64 lstsq solves it."""
    adapter = tiny_adapter("visual_bert", F64)
    data = synthetic(adapter, 6, seed=2)
    keep = torch.ones(adapter.num_sites, adapter.num_heads, dtype=F64)
    keep[0, [0, 2]] = 0
    keep[2, 1] = 0
    tuning = tune_scales(adapter, data, keep, batch_size=4)
    scales, untuned = tuning.scales, tuning.untuned
    assert tuning.offsets is None
    assert untuned == []
    inputs = data.collate(range(6)).inputs
    output = adapter.model.get_submodule(adapter.weights_of(adapter.sites[0]).output.rpartition(".")[0])
    seen = []
    handle = output.register_forward_hook(lambda module, args, out: seen.append(module.dense(args[0]) + args[1]))

    def site0_sum(gate0):
        mask = torch.ones(adapter.num_sites, adapter.num_heads, dtype=F64)
        mask[0] = gate0
        seen.clear()
        gated_logits(adapter, inputs, mask)
        return real_rows(adapter, inputs, 0, seen[0]).flatten().numpy()

    try:
        none = site0_sum(torch.zeros(adapter.num_heads))
        kept = [1, 3]
        columns = np.stack([site0_sum(torch.eye(adapter.num_heads, dtype=F64)[h]) - none for h in kept], axis=1)
        target = site0_sum(torch.ones(adapter.num_heads)) - none
    finally:
        handle.remove()
    expected = np.linalg.lstsq(columns, target, rcond=None)[0]
    np.testing.assert_allclose(scales[0, kept].numpy(), expected, rtol=1e-8, atol=1e-10)
    hidden = adapter.model.config.hidden_size  # with offsets: one more column per hidden unit
    offset_columns = np.tile(np.eye(hidden), (len(target) // hidden, 1))
    expected = np.linalg.lstsq(np.concatenate([columns, offset_columns], axis=1), target, rcond=None)[0]
    with_offsets = tune_scales(adapter, data, keep, batch_size=4, offsets=True)
    np.testing.assert_allclose(with_offsets.scales[0, kept].numpy(), expected[:2], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(with_offsets.offsets[0].numpy(), expected[2:], rtol=1e-7, atol=1e-9)
    assert scales[0, [0, 2]].tolist() == [0.0, 0.0] and scales[2, 1] == 0
    assert not torch.allclose(scales[keep == 1], torch.ones(int(keep.sum()), dtype=F64))
    assert hooks_left(adapter.model) == []


def test_tuned_export_equals_the_gated_model_when_the_tuning_is_the_identity(tmp_path):
    adapter = tiny_adapter("visual_bert", F64)
    data = synthetic(adapter, 8, seed=4)
    compression = compress(adapter, data, fraction=0.0, batch_size=4)  # nothing pruned: every scale solves to 1
    torch.testing.assert_close(compression.gates, torch.ones_like(compression.gates), rtol=0, atol=1e-8)
    export_compressed(adapter, compression, tmp_path / "pruned")
    pruned = load_model("visual_bert", str(tmp_path / "pruned")).to(F64)
    inputs = data.collate(range(8)).inputs
    with torch.no_grad():
        torch.testing.assert_close(pruned(**inputs).logits, gated_logits(adapter, inputs, compression.gates),
                                   rtol=1e-10, atol=1e-12)  # fmt: skip
        torch.testing.assert_close(pruned(**inputs).logits, adapter.logits(inputs), rtol=1e-7, atol=1e-8)


def report_removed(adapter, compression):
    return removed_heads(adapter, effective_mask(adapter, (compression.gates != 0).double()))


def test_export_reloads_and_equals_the_tuned_gated_model(tmp_path):
    adapter = tiny_adapter("visual_bert", F64)
    data = synthetic(adapter, 12, seed=5, labels="model")
    compression = compress(adapter, data, fraction=0.5, batch_size=4)
    assert int((compression.gates == 0).sum()) == compression.removed == 6  # int(0.5 · 12)
    assert torch.equal(compression.gates != 0, compression.rearranged == 1)
    assert compression.estimate["rearranged"] <= compression.estimate["searched"]
    report = export_compressed(adapter, compression, tmp_path / "pruned")
    assert report["pruned_effective"] == 6 and report["parameters_after"] < report["parameters_before"]
    inputs = data.collate(range(12)).inputs
    expected = gated_logits(adapter, inputs, compression.gates)
    in_memory = prune_heads(folded_copy(adapter, compression.gates).model, report_removed(adapter, compression))
    pruned = load_model("visual_bert", str(tmp_path / "pruned")).to(F64)  # reloaded, its weights in float32
    with torch.no_grad():
        torch.testing.assert_close(in_memory(**inputs).logits, expected, rtol=1e-10, atol=1e-12)
        exported = pruned(**inputs).logits
    torch.testing.assert_close(exported, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(exported, gated_logits(adapter, inputs, compression.rearranged), rtol=1e-3, atol=1e-4)
    found = accuracies(adapter, data, compression, batch_size=5)
    assert found["unpruned"] == 100.0 and set(found) == {"unpruned", "searched", "rearranged", "tuned"}
    assert hooks_left(adapter.model) == []


def test_export_with_offsets_equals_the_tuned_model(tmp_path):
    adapter = tiny_adapter("visual_bert", F64)
    data = synthetic(adapter, 8, seed=7, labels="model")
    compression = compress(adapter, data, fraction=0.75, batch_size=4, offsets=True)
    assert compression.offsets.shape == (adapter.num_sites, adapter.model.config.hidden_size)
    assert compression.offsets.abs().sum() > 0
    export_compressed(adapter, compression, tmp_path / "pruned")
    pruned = load_model("visual_bert", str(tmp_path / "pruned")).to(F64)
    folded = folded_copy(adapter, compression.gates, compression.offsets)
    inputs = data.collate(range(8)).inputs
    expected = gated_logits(folded, inputs, (compression.gates != 0).double())
    with torch.no_grad():
        torch.testing.assert_close(pruned(**inputs).logits, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected, gated_logits(adapter, inputs, compression.gates), rtol=1e-3, atol=1e-4)


def test_tuning_refuses_modules_that_serve_two_sites():
    adapter = tiny_adapter("lxmert", F64)
    keep = torch.ones(adapter.num_sites, adapter.num_heads)
    with pytest.raises(InputError, match=r"^mask tuning needs one site per attention module; shared by several sites: "
                       r"lxmert\.encoder\.x_layers\.0\.visual_attention\.att \(export with --no-tune"):
        tune_scales(adapter, synthetic(adapter, 2), keep)


@pytest.mark.parametrize("tune", [True, False])
def test_export_command_compresses(tmp_path, capsys, tune):
    out = tmp_path / "run"
    flags = ["--compress", "kwon", "--budget", "0.5", "--calibration", "6", "--tune" if tune else "--no-tune", "--no-offsets"]
    assert main(["export", "--preset", "tiny-visual_bert", f"out_dir={out}", "progress=false", "data.score_examples=8",
                 "data.num_examples=10", *flags]) == 0  # fmt: skip
    results = json.loads((out / "compression.json").read_text())
    assert results["heads_removed"] == 6 and results["calibration_examples"] == 6 and results["tuned"] is tune
    assert results["evaluated_examples"] == 10
    assert set(results["accuracy"]) == {"unpruned", "searched", "rearranged", "exported"} | ({"tuned"} if tune else set())
    assert results["accuracy"]["exported"] == results["accuracy"]["tuned" if tune else "rearranged"]
    assert results["export"]["pruned_effective"] == 6
    assert json.loads((out / "model_pruned" / "headlens_export.json").read_text()) == results["export"]
    assert "compression.json" in capsys.readouterr().out
    assert results["offsets"] is False and results["fisher_target"] == "predicted"


def test_export_command_tunes_a_methods_ranking(tmp_path, capsys):
    """``--compress ranked``: the mask is the global ranking's (as a plain export takes it), tuned."""
    from headlens.cli import main as cli
    from headlens.config import load_config
    from headlens.masks import head_masks
    from headlens.pipeline import load_model_and_data
    from headlens.sweep import global_scores

    out = tmp_path / "run"
    settings = ["--preset", "tiny-visual_bert", "progress=false", "data.score_examples=8", "data.num_examples=10"]
    assert cli(["export", *settings, f"out_dir={out}", "export.method=grad", "--compress", "ranked", "--budget", "0.5",
                "--calibration", "6"]) == 0  # fmt: skip
    results = json.loads((out / "compression.json").read_text())
    assert results["compress"] == "ranked" and results["ranking"] == "grad" and results["search"] == "given"
    assert results["rearranged_within_sites"] is False and results["tuned"] is True and results["offsets"] is True
    config = load_config(settings[2:], "tiny-visual_bert")
    adapter, _, scoring = load_model_and_data(config)
    scores, _, _ = global_scores(adapter, scoring, ["grad"], config.sweep.batch_size, config.sweep.seed, None, False)
    keep = head_masks(scores["grad"], [0.5], "negative", "head", adapter.count_rule)[0].double()
    assert torch.equal(torch.tensor(results["searched"], dtype=torch.float64), keep)
    assert torch.equal(torch.tensor(results["gates"]) != 0, keep == 1)
    assert results["accuracy"]["exported"] == results["accuracy"]["tuned"]
    assert cli(["export", *settings, f"out_dir={tmp_path / 'layer'}", "export.unit=layer", "--compress", "ranked"]) == 2
    assert "export.compress=ranked removes heads" in capsys.readouterr().err


def test_export_command_refuses_an_unknown_fisher_target(tmp_path, capsys):
    assert main(["export", "--preset", "tiny-visual_bert", f"out_dir={tmp_path}", "export.fisher=labels",
                 "--compress", "kwon"]) == 2  # fmt: skip
    assert "key 'export.fisher'" in capsys.readouterr().err
