import pytest
import torch
from transformers import LxmertConfig

from headlens.adapters import sites_of
from headlens.adapters.lxmert import LXMERT, schedule
from headlens.edits import capture
from headlens.relevance import relevance_maps
from headlens.relevance.propagation import head_average, normalise_self

from conftest import tiny_adapter, tiny_batch
from helpers import alone

F64 = torch.float64


def average(cap, name, keep=None, gradient=True):
    """Ā of one site of a one-example capture, written out: mean over heads of clamp(G·A)
    (or of A), zero on padded rows and columns."""
    i = [s.name for s in cap.sites].index(name)
    attn, grad = cap.attn[i][0], cap.grad[i][0] if gradient else None
    heads = attn.shape[0]
    total = torch.zeros_like(attn[0])
    for h in range(heads):
        if keep is not None and keep[0, i, h] == 0:
            continue
        total += (grad[h] * attn[h]).clamp(min=0) if gradient else attn[h]
    for q, real in enumerate(cap.query[i].mask[0]):
        for k, real_key in enumerate(cap.key[i].mask[0]):
            if not (real and real_key):
                total[q, k] = 0
    return total / heads


def normalised(r):
    """R̄ row by row: (R − I) / rowsum + I, 0 for a row summing to 0."""
    out = torch.zeros_like(r)
    for row in range(r.shape[0]):
        residual = r[row].clone()
        residual[row] -= 1
        total = residual.sum()
        out[row] = residual / total if total != 0 else 0
        out[row, row] += 1
    return out


def reference_lxmert(cap, config, keep=None, gradient=True):
    """LXMERT's relevance schedule (docs/method.md#lxmerts-relevance-schedule), one example, layer by layer."""
    avg = lambda name: average(cap, name, keep, gradient)  # noqa: E731
    t, v = cap.attn[0].shape[-1], cap.attn[[s.name for s in cap.sites].index("vis.0.self")].shape[-1]
    r_tt, r_ii, r_ti, r_it = torch.eye(t, dtype=F64), torch.eye(v, dtype=F64), torch.zeros(t, v, dtype=F64), torch.zeros(v, t, dtype=F64)
    for i in range(config.l_layers):
        cam = avg(f"lang.{i}.self")
        r_tt, r_ti = r_tt + cam @ r_tt, r_ti + cam @ r_ti
    for i in range(config.r_layers):
        cam = avg(f"vis.{i}.self")
        r_ii, r_it = r_ii + cam @ r_ii, r_it + cam @ r_it
    for i in range(config.x_layers):
        last = i == config.x_layers - 1
        cam_ti = avg(f"x.{i}.l2v")
        add_ti, add_tt = normalised(r_tt).T @ cam_ti @ normalised(r_ii), cam_ti @ r_it
        if not last:
            cam_it = avg(f"x.{i}.v2l")
            add_it, add_ii = normalised(r_ii).T @ cam_it @ normalised(r_tt), cam_it @ r_ti
            r_it, r_ii = r_it + add_it, r_ii + add_ii
        r_ti, r_tt = r_ti + add_ti, r_tt + add_tt
        cam = avg(f"x.{i}.lang_self")
        r_tt, r_ti = r_tt + cam @ r_tt, r_ti + cam @ r_ti
        if not last:
            cam = avg(f"x.{i}.vis_self")
            r_ii, r_it = r_ii + cam @ r_ii, r_it + cam @ r_it
    r_tt[0, 0] = 0
    return r_tt[0], r_ti[0]


def reference_visual_bert(cap, text_length, keep=None, gradient=True):
    n = cap.attn[0].shape[-1]
    r = torch.eye(n, dtype=F64)
    for site in cap.sites:
        r = r + average(cap, site.name, keep, gradient) @ r
    row = text_length - 2
    r[row, row] = 0
    return r[row, :text_length], r[row, text_length:]


def reference(adapter, single, keep=None, gradient=True):
    cap = capture(adapter, single.inputs)
    if adapter.family == "lxmert":
        return reference_lxmert(cap, adapter.model.config, keep, gradient)
    return reference_visual_bert(cap, single.inputs["input_ids"].shape[1], keep, gradient)


@pytest.mark.parametrize("method", ["ours", "rollout"])
def test_batched_maps_equal_a_layer_by_layer_reference_per_example(family, method):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=4, dtype=F64)
    generator = torch.Generator().manual_seed(0)
    keep = (torch.rand(4, adapter.num_sites, adapter.num_heads, generator=generator) > 0.3).to(F64)
    maps = relevance_maps(adapter, batch.inputs, method, keep=keep)
    for row in range(4):
        single = alone(batch, row)
        text, image = reference(adapter, single, keep[row : row + 1], gradient=method == "ours")
        t = single.inputs["input_ids"].shape[1]
        image = image * single.inputs.get("visual_attention_mask", torch.ones(1, image.shape[0]))[0]
        torch.testing.assert_close(maps.text[row, :t], text, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(maps.image[row], image, rtol=1e-10, atol=1e-12)
        assert (maps.text[row, t:] == 0).all()


def test_raw_attention_is_the_last_sites_head_mean():
    adapter = tiny_adapter("lxmert", F64)
    batch = tiny_batch(adapter, size=3, dtype=F64)
    maps = relevance_maps(adapter, batch.inputs, "raw")
    cap = capture(adapter, batch.inputs, grad=False)
    names = [s.name for s in cap.sites]
    text = cap.attn[names.index("x.1.lang_self")].mean(1)[:, 0]
    text[:, 0] = 0
    torch.testing.assert_close(maps.text, text * batch.inputs["attention_mask"])
    torch.testing.assert_close(maps.image, cap.attn[names.index("x.1.l2v")].mean(1)[:, 0] * batch.inputs["visual_attention_mask"])


def test_rollout_of_a_single_stream_is_attention_rollout():
    """R ← (I + Ā) R is 2^L × the classic rollout Π (½I + ½Ā) (Abnar & Zuidema 2020)."""
    adapter = tiny_adapter("visual_bert", F64)
    single = alone(tiny_batch(adapter, size=2, dtype=F64), 0)
    maps = relevance_maps(adapter, single.inputs, "rollout")
    cap = capture(adapter, single.inputs, grad=False)
    n = cap.attn[0].shape[-1]
    rollout = torch.eye(n, dtype=F64)
    for attn in cap.attn:
        rollout = (0.5 * torch.eye(n, dtype=F64) + 0.5 * attn[0].mean(0)) @ rollout
    t = single.inputs["input_ids"].shape[1]
    row = rollout[t - 2] * 2 ** len(cap.attn)
    row[t - 2] = 0
    torch.testing.assert_close(maps.text[0], row[:t])
    torch.testing.assert_close(maps.image[0], row[t:] * single.inputs["visual_attention_mask"][0])


def test_lxmert_relevance_schedule_site_by_site():
    steps = schedule(LxmertConfig())
    expected = [[f"lang.{i}.self"] for i in range(9)] + [[f"vis.{i}.self"] for i in range(5)]
    for i in range(4):
        expected += [[f"x.{i}.l2v", f"x.{i}.v2l"], [f"x.{i}.lang_self"], [f"x.{i}.vis_self"]]
    expected += [["x.4.l2v"], ["x.4.lang_self"]]
    assert steps == expected
    every_site = sorted(name for step in steps for name in step)
    assert every_site == sorted(s.name for s in sites_of(LXMERT, LxmertConfig()))


@pytest.mark.parametrize("method", ["ours", "rollout", "raw"])
def test_pruning_every_head_of_a_site_or_all_heads_gives_finite_maps(family, method):
    adapter = tiny_adapter(family, F64)
    batch = tiny_batch(adapter, size=3, dtype=F64)
    keep = torch.ones(3, adapter.num_sites, adapter.num_heads, dtype=F64)
    keep[0, 0] = 0
    keep[1, :, :] = 0
    keep[2, -1] = 0
    maps = relevance_maps(adapter, batch.inputs, method, keep=keep)
    assert torch.isfinite(maps.text).all() and torch.isfinite(maps.image).all()
    assert maps.text[1].abs().sum() == 0 and maps.image[1].abs().sum() == 0  # nothing left to propagate


def test_normalisation_rows_summing_to_zero_stay_finite():
    r = torch.eye(3, dtype=F64)
    r[1, 2] = 0.5
    out = normalise_self(r)
    torch.testing.assert_close(out, torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=F64))
    torch.testing.assert_close(normalise_self(r[None])[0], normalised(r))


def test_head_average_counts_pruned_heads_in_the_divisor():
    maps = torch.ones(1, 4, 2, 2, dtype=F64)
    keep = torch.tensor([[1.0, 0, 0, 1]], dtype=F64)
    torch.testing.assert_close(head_average(maps, keep), torch.full((1, 2, 2), 0.5, dtype=F64))
    grads = -torch.ones_like(maps)
    assert head_average(maps, None, grads).abs().sum() == 0  # clamped at 0


def test_unknown_map_method_lists_the_valid_ones():
    adapter = tiny_adapter("lxmert")
    with pytest.raises(KeyError, match="unknown relevance-map method 'gradcam'; valid: ours, lrp, rollout, raw"):
        relevance_maps(adapter, tiny_batch(adapter, 2).inputs, "gradcam")
