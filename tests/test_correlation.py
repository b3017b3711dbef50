"""The Spearman table of first-order head scores against exact single-head ablation."""

import json

import numpy as np
import pytest
import torch

import headlens
from headlens.correlation import correlation_table, markdown, spearman
from headlens.data.batch import Subset

from conftest import synthetic, tiny_adapter

F64 = torch.float64


def numpy_spearman(a, b):
    """Pearson's r of the ranks, by argsort (no ties in the values it is given)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_spearman_values_ties_and_constant_rows():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    b = torch.tensor([[1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    rho = spearman(a, b)
    assert rho[0].item() == pytest.approx(0.8)  # 1 − 6·Σd² / (n(n² − 1)) = 1 − 12/60
    assert rho[1].item() == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])  # ties share their mean rank
    assert torch.isnan(rho[2])


def test_table_equals_per_example_spearman_of_the_scores_and_of_their_means():
    adapter = tiny_adapter("visual_bert", F64)
    examples = synthetic(adapter, 5, labels="model")
    table = correlation_table(adapter, examples, methods=["grad", "taylor", "entropy"], batch_size=2, rows=7)
    batch = examples.collate(range(5))
    exact = headlens.score(adapter, batch, "exact").flatten(1).numpy()
    assert table["reference"] == "exact" and table["n_examples"] == 5 and list(table["methods"]) == ["grad", "taylor", "entropy"]
    for method, row in table["methods"].items():
        scores = headlens.score(adapter, batch, method).flatten(1).numpy()
        rho = [numpy_spearman(scores[i], exact[i]) for i in range(5)]
        p = row["per_example"]
        assert p["n"] == 5 and p["mean"] == pytest.approx(np.mean(rho)) and p["std"] == pytest.approx(np.std(rho))
        assert p["median"] == pytest.approx(np.median(rho))
        assert row["global"] == pytest.approx(numpy_spearman(scores.mean(0), exact.mean(0)))
    lines = markdown(table)
    assert lines[2] == "| method | per example: mean ± sd | quartiles | global |"
    grad = table["methods"]["grad"]
    assert lines[4].startswith(f"| grad | {grad['per_example']['mean']:.2f} ± {grad['per_example']['std']:.2f} |")
    assert markdown({}) == []


def test_sweep_writes_the_table_only_when_asked(tmp_path):
    adapter = tiny_adapter("visual_bert", F64)
    examples, scoring = synthetic(adapter, 2, labels="model"), synthetic(adapter, 4, seed=1, labels="model")
    options = dict(methods=["grad"], protocols=["global"], units=["head"], levels=(0.0, 0.5), progress=False)
    asked = headlens.sweep(adapter, examples, scoring, correlation=3, **options)
    assert asked.correlations == correlation_table(adapter, Subset(scoring, range(3)))  # the scoring split's first 3
    headlens.write_results(asked, tmp_path / "a", plot=False)
    run = json.loads((tmp_path / "a" / "results.json").read_text())["runs"][0]
    assert run["correlations"]["n_examples"] == 3 and set(run["correlations"]["methods"]) == {
        "grad", "grad_abs", "taylor", "fisher", "lrp", "attnlrp", "entropy"}  # fmt: skip
    plain = headlens.sweep(adapter, examples, scoring, **options)
    assert "correlations" not in plain.to_dict()
    with pytest.raises(ValueError, match="correlation must be a number of examples"):
        headlens.SweepOptions(correlation=-1)
