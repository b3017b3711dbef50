"""The quick demo's report in a real browser: headless Chromium, opened from ``file://``.

Playwright drives the system's Chromium (Debian's ``chromium`` package, which ``.ci/run``
installs); it never downloads a browser. Where no Chromium executable exists the tests are
skipped with a message saying so, never passed. Every request the page makes is recorded
and any other than ``file:`` or ``data:`` is aborted and fails the test.

``HEADLENS_REPORT_SCREENSHOT=PATH`` also saves the screenshot there (how the README's
``docs/report.png`` was made).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: the flags of a quiet, offline headless run (no sandbox: CI runs as root).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOT = {"width": 1280, "height": 1640}  # the first model's whole section


@pytest.fixture
def browser(tmp_path):
    """``open(path) -> (page, events)``: a fresh Chromium profile whose every request and
    console message is recorded; a request to anything but ``file:``/``data:`` is aborted."""
    if CHROMIUM is None:
        pytest.skip("no Chromium executable on PATH (Debian: apt-get install chromium): the report's browser test cannot run")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[test]')")
    events = {"requests": [], "failed": [], "errors": [], "blocked": []}
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS, headless=True, viewport=VIEWPORT
        )

        def route(route):
            url = route.request.url
            if url.startswith(("file:", "data:")):
                route.continue_()
            else:
                events["blocked"].append(url)
                route.abort()

        context.route("**/*", route)

        def open_page(path: Path):
            page = context.new_page()
            page.on("request", lambda r: events["requests"].append(r.url))
            page.on("requestfailed", lambda r: events["failed"].append(f"{r.url}: {r.failure}"))
            page.on("console", lambda m: events["errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: events["errors"].append(str(e)))
            page.goto(path.resolve().as_uri())
            page.wait_for_function("document.body.dataset.ready === '1'", timeout=20_000)
            return page

        yield open_page, events
        context.close()


def assert_offline_and_clean(events) -> None:
    assert events["errors"] == [] and events["failed"] == [] and events["blocked"] == []
    assert events["requests"] and all(url.startswith(("file:", "data:")) for url in events["requests"])


def pruned_cells(section) -> list[str]:
    return section.locator("rect.cell.pruned").evaluate_all("cells => cells.map(c => c.dataset.site + '/' + c.dataset.head)")


def set_level(section, index: int) -> None:
    section.locator("input.level").fill(str(index))  # fires input


def assert_faithfulness_panel(section, test: dict) -> None:
    """The perturbation test's panel: one chart per order with one line per map method (random
    included), and one AUC row per curve with its interval."""
    panel = section.locator(".faithfulness-part")
    methods = list(dict.fromkeys(c["method"] for c in test["curves"]))
    charts = panel.locator("svg.panel")
    assert panel.count() == 1 and charts.count() == 2
    for chart, order in zip(charts.all(), ("positive", "negative")):
        assert chart.locator("path.curve").count() == len(methods)
        assert chart.locator("text.panel-title").text_content().startswith(order)
    rows = panel.locator("table.auc tbody tr")
    assert rows.count() == len(test["curves"]) == 2 * len(methods)
    first = test["curves"][0]
    shown = [float(v) for v in rows.first.locator("td").nth(6).inner_text().split(" – ")]
    assert shown == pytest.approx([first["auc_low"], first["auc_high"]], abs=0.051)  # toFixed(1) may round a half down
    assert "lower AUC is better" in panel.inner_text() and "higher AUC is better" in panel.inner_text()


def test_perturbation_test_panel_in_chromium(tmp_path, browser):
    """A run folder with a sweep and the demo's faithfulness.json: the panel draws beside the sweep's."""
    import headlens
    from conftest import synthetic, tiny_adapter
    from headlens.faithfulness import perturbation_test
    from headlens.report import write_report
    from headlens.results import write_results

    adapter = tiny_adapter("visual_bert")
    data = synthetic(adapter, 4, seed=1, labels="model")
    result = headlens.sweep(adapter, data, methods=["grad"], levels=[0.0, 0.5], progress=False)
    write_results(result, tmp_path, plot=False)
    test = perturbation_test(adapter, data, methods=["rollout", "raw"], bootstrap=20, name=adapter.family).to_dict()
    (tmp_path / "faithfulness.json").write_text(json.dumps({adapter.family: test}))
    open_page, events = browser
    page = open_page(write_report(tmp_path))
    assert_faithfulness_panel(page.locator("section.model").first, test)
    assert page.locator(".curves-part path.curve").count() == len(result.curves)  # the sweep's own, unchanged
    assert_offline_and_clean(events)


def test_demo_report_in_chromium(quick_demo, browser, tmp_path):
    from PIL import Image

    open_page, events = browser
    runs = json.loads((quick_demo.out / "results.json").read_text())["runs"]
    page = open_page(quick_demo.out / "report.html")
    assert page.locator("section.model").count() == len(runs) == 2
    faithful = json.loads((quick_demo.out / "faithfulness.json").read_text())
    assert page.locator(".curves-part path.curve").count() == sum(len(run["curves"]) for run in runs)
    for run in runs:
        section = page.locator(f'section.model[data-model="{run["model"]}"]')
        sweep = section.locator(".curves-part")  # the perturbation test's panel below draws its curves alike
        assert sweep.locator("path.curve").count() == len(run["curves"])
        assert sweep.locator("polygon.interval").count() == len(run["curves"])  # every curve's 95 % band
        assert sweep.locator("polygon.seed-band").count() == sum(c["method"] == "random" for c in run["curves"])
        intervals = sweep.locator("table.auc tbody tr td:nth-child(7)").all_inner_texts()
        first = run["curves"][0]
        assert intervals[0] == f"{first['auc_low']:.1f} – {first['auc_high']:.1f}"
        assert section.locator("rect.cell").count() == len(run["sites"]) * run["num_heads"]

        # the slider greys the heads the global grad ranking prunes, as many as the sweep's curve says
        curve = next(c for c in run["curves"] if (c["method"], c["order"], c["unit"], c["protocol"])
                     == ("grad", "negative", "head", "global"))  # fmt: skip
        assert section.locator("select.source").input_value() == "0"  # grad: global mean scores
        assert pruned_cells(section) == []
        overlay = section.locator("canvas.overlay").first
        before = overlay.evaluate("c => c.toDataURL()")
        set_level(section, 6)
        at_six = pruned_cells(section)
        assert len(at_six) == curve["pruned"][6] > 0
        assert section.locator(".level-label").inner_text() == "60 % pruned"
        after = overlay.evaluate("c => c.toDataURL()")
        assert after != before and overlay.get_attribute("data-level") == "6"
        set_level(section, 9)
        assert len(pruned_cells(section)) == curve["pruned"][9] and set(at_six) < set(pruned_cells(section))

        # clicking a head shows its attention and ∂z/∂A ⊙ A for every example
        assert section.locator("canvas.headmap").count() == 0
        section.locator('rect.cell[data-site="1"][data-head="2"]').click()
        maps = section.locator("canvas.headmap")
        assert maps.count() == 2 * section.locator(".example").count() == 2
        assert maps.first.evaluate("c => c.width * c.height") > 0
        assert f"{run['sites'][1]['name']} head 2" in section.locator(".map-title").first.inner_text()

        # a curve's box hides it; the AUC column sorts
        first = sweep.locator("input.toggle").first
        curve_index = first.get_attribute("data-curve")
        first.uncheck()
        assert sweep.locator(f'g.curve-group[data-curve="{curve_index}"]').evaluate("g => g.style.display") == "none"
        sweep.locator("table.auc th", has_text="AUC").click()
        aucs = [float(v) for v in sweep.locator("table.auc tbody tr td:nth-child(6)").all_inner_texts()]
        assert aucs == sorted(aucs) and len(aucs) == len(run["curves"])
        assert_faithfulness_panel(section, faithful[run["model"]])
    assert page.locator("section.provenance").inner_text().count("checkpoint sha256") == 2

    # the screenshot: the first model at 40 % pruned, a head's maps shown, curves all on
    section = page.locator("section.model").first
    set_level(section, 4)
    section.locator(".curves-part button.all").click()
    page.set_viewport_size(SCREENSHOT)
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    with Image.open(shot) as image:
        assert image.size == (SCREENSHOT["width"], SCREENSHOT["height"])
        colours = image.convert("RGB").getcolors(1 << 20)
        assert len(colours) > 50  # drawn, not a blank page
    assert 20_000 < shot.stat().st_size < 1_000_000
    if os.environ.get("HEADLENS_REPORT_SCREENSHOT"):
        smaller = Image.open(shot).convert("RGB").quantize(colors=128, dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        smaller.save(buffer, format="PNG", optimize=True)
        Path(os.environ["HEADLENS_REPORT_SCREENSHOT"]).write_bytes(buffer.getvalue())
    assert_offline_and_clean(events)


def test_encoder_report_degrades_gracefully(quick_demo_encoders, browser):
    open_page, events = browser
    page = open_page(quick_demo_encoders.out / "report.html")
    minilm = page.locator('section.model[data-model="minilm-bbc"]')
    assert minilm.locator(".examples-part").count() == 0 and minilm.locator("rect.cell").count() == 6 * 12
    vit = page.locator('section.model[data-model="vit-digits"]')
    assert vit.locator(".example").count() == 2 and vit.locator(".tokens").count() == 0
    assert vit.locator("canvas.overlay").count() == 2
    vit.locator('rect.cell[data-site="0"][data-head="0"]').click()
    assert "queries: image, keys: image" in vit.locator(".map-title").first.inner_text()
    assert vit.locator("canvas.headmap").count() == 4
    assert_offline_and_clean(events)


def test_language_model_report_draws_perplexity_on_a_log_axis(tmp_path, browser):
    """A `headlens prune` run of a causal LM: its perplexity curves get their own panels."""
    from headlens.cli import main
    from decoders import tiny_lm_folder

    data = tmp_path / "prompts.txt"
    data.write_text("\n".join(" ".join(f"w{(5 * i + j) % 48}" for j in range(4 + i % 3)) for i in range(10)) + "\n")
    out = tmp_path / "lm-run"
    assert main(["prune", "--model", str(tiny_lm_folder(tmp_path)), "--data", str(data), "progress=false",
                 f"out_dir={out}", "data.num_examples=6", "data.score_examples=4", "sweep.methods=[grad,random]",
                 "sweep.units=[head]", "sweep.levels=[0,0.5]"]) == 0  # fmt: skip
    open_page, events = browser
    page = open_page(out / "report.html")
    assert_offline_and_clean(events)
    part = page.locator(".perplexity-part")
    assert part.count() == 1 and "log scale" in part.locator("h3").inner_text()
    assert page.locator(".faithfulness-part").count() == 0  # a prune run has no perturbation test
    assert part.locator("path.curve").count() == 8  # grad and random × both orders × both protocols
    ticks = part.locator("svg.panel").first.locator("text.tick[text-anchor='end']").all_text_contents()
    values = [float(t) for t in ticks]  # the perplexity axis: powers of ten, upwards
    assert len(values) >= 2 and min(values) >= 1 and values == sorted(values) and values[1] / values[0] >= 10 ** 0.1
    low, high = (float(v) for v in page.evaluate("""() => {
        const svg = document.querySelector('.perplexity-part svg.panel');
        const ys = [...svg.querySelectorAll("text.tick[text-anchor='end']")].map((t) => +t.getAttribute('y'));
        return [ys[0], ys[ys.length - 1]]; }"""))  # fmt: skip
    assert low > high  # the axis grows upwards
