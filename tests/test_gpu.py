"""On a CUDA GPU: ``device=auto`` picks it, a sweep there equals the CPU sweep, and bfloat16
masked evaluation runs. Run with ``pytest -m gpu`` on a machine with a GPU
(``benchmarks/gpu.sh`` does); elsewhere they are skipped.
"""

import numpy as np
import pytest
import torch

import headlens
from headlens.config import load_config
from headlens.devices import resolve_device
from headlens.pipeline import load_model_and_data

from conftest import hooks_left, synthetic, tiny_adapter

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run `pytest -m gpu` on a machine with one)"),
]

#: bfloat16 evaluation against float32 on 64 questions whose label is the float32 model's answer:
#: per curve and level at most 10 points apart (6 of 64 answers), 95 % of the per-example scores equal.
BF16_POINTS, BF16_SAME = 10.0, 0.95


def test_device_auto_picks_cuda():
    assert resolve_device("auto") == torch.device("cuda")
    config = load_config(["device=auto", "data.num_examples=4", "data.score_examples=4"], "tiny-visual_bert")
    adapter, evaluated, _ = load_model_and_data(config)
    assert adapter.device.type == "cuda"
    assert evaluated.collate([0]).to(adapter.device).inputs["input_ids"].device.type == "cuda"


@pytest.mark.parametrize("family", ["lxmert", "visual_bert"])
def test_sweep_on_cuda_equals_the_cpu_sweep(family):
    """float64, so that no ranking or answer sits within rounding of a tie: the curves must be
    equal and the scores agree to float64 rounding; grad scores also agree in float32, as sweeps
    run (LRP's divisions can magnify float32 rounding near zero denominators, so it is compared
    in float64 only)."""
    cpu = tiny_adapter(family, torch.float64)
    cuda = headlens.adapter_for(tiny_adapter(family, torch.float64).model.to("cuda"))
    examples = synthetic(cpu, 12, labels="model")  # the CPU model's answers are the labels of both
    scoring = synthetic(cpu, 8, seed=1)
    options = dict(methods=["grad", "lrp", "random"], protocols=["per_example", "global"], score_data=scoring,
                   batch_size=5, progress=False)  # fmt: skip
    on_cpu, on_cuda = headlens.sweep(cpu, examples, **options), headlens.sweep(cuda, examples, **options)
    assert [(c.method, c.protocol, c.accuracy, c.auc) for c in on_cuda.curves] == [
        (c.method, c.protocol, c.accuracy, c.auc) for c in on_cpu.curves
    ]
    np.testing.assert_array_equal(on_cuda.soft, on_cpu.soft)
    batch = examples.collate(range(12))
    for method in ("grad", "lrp"):
        reference = headlens.score(cpu, batch, method)
        measured = headlens.score(cuda, batch.to("cuda"), method).cpu()
        torch.testing.assert_close(measured, reference, rtol=1e-9, atol=1e-12)
    cpu32, cuda32 = tiny_adapter(family), headlens.adapter_for(tiny_adapter(family).model.to("cuda"))
    batch32 = synthetic(cpu32, 12).collate(range(12))
    with torch.no_grad():
        answers = cpu32.logits(batch32.inputs).argmax(-1)  # one target for both, whatever a near tie does
    reference = headlens.score(cpu32, batch32, "grad", target=answers)
    measured = headlens.score(cuda32, batch32.to("cuda"), "grad", target=answers.to("cuda")).cpu()
    torch.testing.assert_close(measured, reference, rtol=1e-3, atol=1e-4 * float(reference.abs().max()))
    assert hooks_left(cuda.model) == [] and hooks_left(cuda32.model) == []


@pytest.mark.parametrize("family", ["lxmert", "visual_bert"])
def test_bfloat16_masked_evaluation_on_cuda(family):
    adapter = headlens.adapter_for(tiny_adapter(family).model.to("cuda"))
    examples = synthetic(adapter, 64, labels="model")
    options = dict(methods=["grad", "random"], progress=False)
    full = headlens.sweep(adapter, examples, **options)
    low = headlens.sweep(adapter, examples, eval_dtype="bfloat16", **options)
    np.testing.assert_array_equal(low.soft[:, :, 0], full.soft[:, :, 0])  # level 0: the float32 scoring pass
    for a, b in zip(full.curves, low.curves):
        assert max(abs(x - y) for x, y in zip(a.accuracy, b.accuracy)) <= BF16_POINTS, (a.method, a.unit, a.order)
    assert np.mean(low.soft == full.soft) >= BF16_SAME
    assert hooks_left(adapter.model) == []
