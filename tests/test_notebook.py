"""The notebook runs top to bottom (each code cell executed in order, as a kernel would)."""

import json
import os
from pathlib import Path

import matplotlib

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "easy_vqa_demo.ipynb"


def test_notebook_runs_on_the_quick_models(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setenv("HEADLENS_QUICK", "1")
    monkeypatch.setenv("HEADLENS_CACHE", str(tmp_path / "cache"))
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [("".join(c["source"]), i) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    assert len(code) == 5
    namespace: dict = {}
    for source, index in code:
        exec(compile(source, f"{NOTEBOOK.name}[cell {index}]", "exec"), namespace)
    assert namespace["grad"].shape == namespace["lrp"].shape == (8, 10, 4)
    assert {c.method for c in namespace["result"].curves} == {"grad", "lrp", "random"}
    assert namespace["explained"].levels == [0.0, 0.4, 0.6, 0.9]
    assert os.listdir(tmp_path / "cache")  # the quick model was trained into the given cache
