// headlens report: draws one run's curves, head grid, explained examples and perturbation tests of
// the relevance maps from the JSON
// embedded in the page (element #report-data). Plain JavaScript, SVG and canvas; it loads
// nothing and contacts no host. Every number shown was computed in Python (rankings, pruned
// heads, relevance); this script only draws them.
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const SVG_NS = document.getElementById("svg-namespace").namespaceURI; // no URL literal needed
  const COLOURS = DATA.colours;
  const tooltip = document.getElementById("tooltip");

  // --- helpers -----------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  function pct(level) {
    return Math.round(100 * level) + " %";
  }

  function fmt(value) {
    if (value === null || value === undefined) return "–";
    if (value === 0) return "0";
    const size = Math.abs(value);
    return size >= 1000 || size < 0.01 ? value.toExponential(2) : value.toPrecision(3);
  }

  function clamp(value, low, high) {
    return Math.min(high, Math.max(low, value));
  }

  function lookup(table, t) {
    return table[Math.round(clamp(t, 0, 1) * (table.length - 1))];
  }

  // relevance v in [0, 1]: the overlays' sequential colour, opacity rising with v
  function relevanceRGBA(v) {
    const c = lookup(COLOURS.relevance, v);
    return [c[0], c[1], c[2], COLOURS.relevance_alpha * clamp(v, 0, 1)];
  }

  function cssRGBA(c) {
    return c.length === 4 ? `rgba(${c[0]},${c[1]},${c[2]},${c[3].toFixed(3)})` : `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  // signed v in [-1, 1] → diverging colour (blue negative, red positive)
  function signedColour(v) {
    return cssRGBA(lookup(COLOURS.signed, (clamp(v, -1, 1) + 1) / 2));
  }

  function showTip(event, text) {
    tooltip.textContent = text;
    tooltip.hidden = false;
    tooltip.style.left = event.pageX + 12 + "px";
    tooltip.style.top = event.pageY + 12 + "px";
  }

  function hideTip() {
    tooltip.hidden = true;
  }

  function hoverText(node, text) {
    node.addEventListener("mousemove", (event) => showTip(event, typeof text === "function" ? text(event) : text));
    node.addEventListener("mouseleave", hideTip);
  }

  // an accuracy axis: [low, high, step] with round ticks, at most 7 of them
  function niceRange(values) {
    let low = Math.min(...values);
    let high = Math.max(...values);
    if (high - low < 1e-9) {
      low -= 5;
      high += 5;
    }
    const step = [2, 5, 10, 20, 25, 50].find((s) => (high - low) / s <= 6) || 100;
    return [Math.floor(low / step) * step, Math.ceil(high / step) * step, step];
  }

  // one map [heads, queries, keys] stored as int8 per head (value = q · scale[head] / 127)
  function decodeMap(map) {
    const bytes = atob(map.data);
    const q = new Int8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) q[i] = (bytes.charCodeAt(i) << 24) >> 24;
    return { q: q, shape: map.shape, scale: map.scale };
  }

  function streamLabels(example, stream) {
    if (stream === "text") return example.tokens;
    if (stream === "image") return example.image_labels;
    return example.tokens.concat(example.image_labels); // joint: text then image
  }

  // --- the page ----------------------------------------------------------------------------
  function build() {
    document.getElementById("title").textContent = DATA.title;
    const nav = document.getElementById("models");
    const main = document.getElementById("report");
    main.textContent = "";
    const images = [];
    DATA.models.forEach((model, index) => {
      nav.append(el("a", { href: "#model-" + index }, model.name));
      main.append(modelSection(model, index, images));
    });
    main.append(provenanceSection());
    Promise.all(images).then(() => {
      document.body.dataset.ready = "1";
    });
  }

  function modelSection(model, index, images) {
    const state = { level: 0, head: null };
    const views = [];
    const update = () => views.forEach((view) => view());
    const section = el("section", { class: "model", id: "model-" + index, "data-model": model.name });
    section.append(el("h2", {}, model.name));
    const counts = [];
    if (model.n_examples) counts.push(`${model.n_examples} examples evaluated`);
    if (model.n_score) counts.push(`global rankings from the mean scores of ${model.n_score} other examples`);
    if (model.examples_total) counts.push(`${model.examples_total} explained (${model.examples.length} shown)`);
    section.append(el("p", { class: "counts" }, counts.join("; ")));

    const levels = model.levels;
    const slider = el("input", { type: "range", class: "level", min: 0, max: levels.length - 1, step: 1, value: 0 });
    const label = el("output", { class: "level-label" });
    slider.addEventListener("input", () => {
      state.level = Number(slider.value);
      update();
    });
    views.push(() => {
      label.textContent = pct(levels[state.level]) + " pruned";
    });
    section.append(el("div", { class: "controls" }, el("label", {}, "pruning level ", slider), label));

    for (const part of [curvesPart(model, state, views), curvesPart(model, state, views, PERPLEXITY),
                        faithfulnessPart(model), gridPart(model, state, views, update),
                        examplesPart(model, state, views, images)]) {
      if (part) section.append(part);
    }
    update();
    return section;
  }

  // --- curves and the AUC table ------------------------------------------------------------
  const UNIT_ORDER = ["head", "kv_group", "layer"];
  const PROTOCOL_ORDER = ["per_example", "global"];

  function curveName(c) {
    return `${c.method} · ${c.order} · ${c.protocol.replace("_", "-")} · ${c.unit}s`;
  }

  // what a curve panel plots: accuracy (with its intervals and AUC table), or a language model's
  // perplexity (on a log axis, where a model that falls apart does not flatten the rest)
  const ACCURACY = { title: "Accuracy against fraction pruned", label: "accuracy (%)", log: false, bands: true,
                     values: (c) => c.accuracy, unit: " %" };
  const PERPLEXITY = { title: "Perplexity against fraction pruned (log scale)", label: "perplexity", log: true,
                       bands: false, values: (c) => (c.metrics || {}).perplexity, unit: "" };

  // the y axis shared by a part's panels: every value plotted, with its intervals and bands where drawn
  function valueRange(curves, measure) {
    const along = (v) => (measure.log ? Math.log10(v) : v);
    return niceRange(curves.flatMap((c) => [...measure.values(c), ...(measure.bands ? [
      ...(c.accuracy_low || []), ...(c.accuracy_high || []), ...(c.band_low || []), ...(c.band_high || [])] : [])])
      .map(along));
  }

  // a sweep panel's x axis (the model's pruning levels) and how its curves and points are named
  function sweepAxes(model, unit, protocol) {
    return {
      title: `${unit}s · ${protocol.replace("_", "-")}`, xlabel: `${unit}s pruned (%)`, ticks: model.levels,
      xs: (c) => c.levels, colours: COLOURS.methods, name: curveName,
      point: (c, i) => `${pct(c.levels[i])} pruned (${c.pruned[i]} ${c.unit}s)`,
    };
  }

  function curvesPart(model, state, views, measure = ACCURACY) {
    const curves = model.curves.filter((c) => measure.values(c));
    if (!curves.length) return null;
    const part = el("div", { class: "part curves-part" + (measure.log ? " perplexity-part" : "") });
    part.append(el("h3", {}, measure.title));
    const row = el("div", { class: "row" });
    const panels = el("div", { class: "panels" });
    const keys = [];
    model.curves.forEach((c) => {
      const key = c.unit + "|" + c.protocol;
      if (!keys.includes(key)) keys.push(key);
    });
    keys.sort((a, b) => {
      const [ua, pa] = a.split("|");
      const [ub, pb] = b.split("|");
      return UNIT_ORDER.indexOf(ua) - UNIT_ORDER.indexOf(ub) || PROTOCOL_ORDER.indexOf(pa) - PROTOCOL_ORDER.indexOf(pb);
    });
    const range = valueRange(curves, measure);
    const shapes = new Map(); // curve index → its SVG group
    const markers = [];
    for (const key of keys) {
      const [unit, protocol] = key.split("|");
      const members = model.curves.map((c, i) => [c, i])
        .filter(([c]) => c.unit === unit && c.protocol === protocol && measure.values(c));
      panels.append(curvePanel(sweepAxes(model, unit, protocol), members, range, shapes, markers, measure));
    }
    views.push(() => markers.forEach((draw) => draw(model.levels[state.level])));
    row.append(panels);
    if (!measure.log) row.append(aucTable(model.curves, sweepColumns(model), shapes, COLOURS.methods, SWEEP_NOTE));
    part.append(row);
    return part;
  }

  // one chart of ``members`` ([curve, index] pairs) on ``axes`` (see sweepAxes); with ``markers``, a line
  // at the slider's pruning level (a perturbation test, of the unpruned model, has none)
  function curvePanel(axes, members, [low, high, step], shapes, markers, measure = ACCURACY) {
    const width = 360, height = 230, left = 44, right = 10, top = 24, bottom = 36;
    const top_level = Math.max(...axes.ticks, 0.01);
    const x = (level) => left + (level / top_level) * (width - left - right);
    const along = (v) => (measure.log ? Math.log10(v) : v);
    const y = (value) => top + (1 - (along(value) - low) / (high - low)) * (height - top - bottom);
    const yTick = (tick) => top + (1 - (tick - low) / (high - low)) * (height - top - bottom);
    const box = svg("svg", { class: "panel", width: width, height: height, viewBox: `0 0 ${width} ${height}` });
    const title = svg("text", { x: width / 2, y: 14, class: "panel-title", "text-anchor": "middle" });
    title.textContent = axes.title;
    box.append(title);
    for (let tick = low; tick <= high + 1e-9; tick += step) {
      box.append(svg("line", { x1: left, x2: width - right, y1: yTick(tick), y2: yTick(tick), class: "gridline" }));
      const text = svg("text", { x: left - 4, y: yTick(tick) + 3, class: "tick", "text-anchor": "end" });
      text.textContent = measure.log ? fmt(Math.pow(10, tick)) : Math.round(tick);
      box.append(text);
    }
    axes.ticks.forEach((level) => {
      const text = svg("text", { x: x(level), y: height - bottom + 13, class: "tick", "text-anchor": "middle" });
      text.textContent = Math.round(100 * level);
      box.append(text);
    });
    const xlabel = svg("text", { x: (left + width - right) / 2, y: height - 6, class: "axis-label", "text-anchor": "middle" });
    xlabel.textContent = axes.xlabel;
    const ylabel = svg("text", { x: -(top + height - bottom) / 2, y: 11, class: "axis-label", transform: "rotate(-90)",
                                 "text-anchor": "middle" });
    ylabel.textContent = measure.label;
    box.append(xlabel, ylabel);
    if (markers) {
      const marker = svg("line", { y1: top, y2: height - bottom, class: "level-marker" });
      box.append(marker);
      markers.push((level) => {
        marker.setAttribute("x1", x(level));
        marker.setAttribute("x2", x(level));
      });
    }
    for (const [c, index] of members) {
      const colour = axes.colours[c.method] || "#444";
      const group = svg("g", { class: "curve-group", "data-curve": index });
      const values = measure.values(c);
      const levels = axes.xs(c);
      const points = levels.map((level, i) => `${x(level).toFixed(1)},${y(values[i]).toFixed(1)}`).join(" ");
      for (const [lows, highs, kind] of [[c.accuracy_low, c.accuracy_high, "interval"], [c.band_low, c.band_high, "seed-band"]]) {
        if (!measure.bands || !lows || !highs) continue; // a file written before intervals, or one seed
        const outline = [...levels.map((level, i) => [level, lows[i]]), ...levels.map((level, i) => [level, highs[i]]).reverse()];
        group.append(svg("polygon", { class: kind, fill: colour, "data-curve": index,
                                      points: outline.map(([l, a]) => `${x(l).toFixed(1)},${y(a).toFixed(1)}`).join(" ") }));
      }
      group.append(svg("polyline", { class: "curve-hit", points: points }));
      const line = svg("path", { class: "curve", d: "M" + points.replace(/ /g, " L"), stroke: colour,
                                 "stroke-dasharray": COLOURS.dash[c.order] || "", "data-curve": index });
      group.append(line);
      levels.forEach((level, i) => {
        const dot = svg("circle", { class: "point", cx: x(level), cy: y(values[i]), r: 2.6, fill: colour });
        hoverText(dot, `${axes.name(c)}: ${axes.point(c, i)} → ${values[i].toFixed(2)}${measure.unit}`);
        group.append(dot);
      });
      hoverText(group.querySelector("polyline.curve-hit"), `${axes.name(c)} (AUC ${aucText(c)})`);
      shapes.set(index, group);
      box.append(group);
    }
    return box;
  }

  function aucText(c) {
    const interval = c.auc_low == null ? "" : ` [${c.auc_low.toFixed(1)}, ${c.auc_high.toFixed(1)}]`;
    const seeds = c.seed_auc ? `; ${c.seed_auc.length} seeds: ${c.seed_auc.map((v) => v.toFixed(1)).join(", ")}` : "";
    return c.auc.toFixed(1) + interval + seeds;
  }

  // an AUC table's columns: [header, value of a curve]; the first is the show/hide box
  const INTERVAL_COLUMN = ["95 % interval", (c) => (c.auc_low == null ? "–" : `${c.auc_low.toFixed(1)} – ${c.auc_high.toFixed(1)}`)];
  const lastAccuracy = (c) => c.accuracy[c.accuracy.length - 1];

  function sweepColumns(model) {
    return [
      ["show", null], ["method", (c) => c.method], ["order", (c) => c.order], ["protocol", (c) => c.protocol],
      ["unit", (c) => c.unit], ["AUC", (c) => c.auc], INTERVAL_COLUMN,
      [`at ${pct(model.levels[model.levels.length - 1])}`, lastAccuracy],
    ];
  }

  const SWEEP_NOTE = "AUC = trapz(accuracy / 100, levels) × 100; 95 % interval: bootstrap over the evaluated examples " +
    "(shaded around each curve; a random ranking's band over its seeds is shaded darker). Click a column to sort, a " +
    "box to show or hide its curve ";

  // a sortable table of ``curves`` (one row each; ``shapes`` maps a curve's index to its SVG group)
  function aucTable(curves, columns, shapes, colours, note) {
    const table = el("table", { class: "auc" });
    const head = el("tr");
    const body = el("tbody");
    const rows = curves.map((c, index) => {
      const box = el("input", { type: "checkbox", class: "toggle", "data-curve": index });
      box.checked = true;
      box.addEventListener("change", () => {
        shapes.get(index).style.display = box.checked ? "" : "none";
      });
      const swatch = svg("svg", { width: 26, height: 10 });
      swatch.append(svg("line", { x1: 1, x2: 25, y1: 5, y2: 5, stroke: colours[c.method] || "#444",
                                  "stroke-width": 2, "stroke-dasharray": COLOURS.dash[c.order] || "" }));
      const row = el("tr", { "data-curve": index }, el("td", {}, box, swatch));
      for (const [, value] of columns.slice(1)) {
        const v = value(c);
        row.append(el("td", { class: typeof v === "number" ? "number" : null }, typeof v === "number" ? v.toFixed(1) : v));
      }
      row.addEventListener("mouseenter", () => shapes.get(index).classList.add("highlight"));
      row.addEventListener("mouseleave", () => shapes.get(index).classList.remove("highlight"));
      return [c, row];
    });
    columns.forEach(([name, value], column) => {
      const cell = el("th", {}, name);
      if (value) {
        cell.classList.add("sortable");
        cell.addEventListener("click", () => {
          const ascending = cell.getAttribute("aria-sort") !== "ascending";
          head.querySelectorAll("th").forEach((th) => th.removeAttribute("aria-sort"));
          cell.setAttribute("aria-sort", ascending ? "ascending" : "descending");
          rows.sort(([a], [b]) => {
            const va = value(a), vb = value(b);
            const order = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
            return ascending ? order : -order;
          });
          rows.forEach(([, row]) => body.append(row));
        });
      }
      head.append(cell);
    });
    rows.forEach(([, row]) => body.append(row));
    table.append(el("thead", {}, head), body);
    const all = el("button", { type: "button", class: "all" }, "show all");
    const none = el("button", { type: "button", class: "none" }, "hide all");
    const set = (checked) => body.querySelectorAll("input.toggle").forEach((box) => {
      box.checked = checked;
      box.dispatchEvent(new Event("change"));
    });
    all.addEventListener("click", () => set(true));
    none.addEventListener("click", () => set(false));
    return el("div", { class: "auc-wrap" }, el("p", { class: "note" }, note, all, none), table);
  }

  // --- faithfulness of the relevance maps: the perturbation test ---------------------------
  // what each order removes first, and which AUC a faithful map gets there
  const REMOVAL_ORDERS = {
    positive: { first: "most relevant", better: "lower", why: "a faithful map makes accuracy fall fast" },
    negative: { first: "least relevant", better: "higher", why: "a faithful map keeps accuracy" },
  };

  function faithfulnessPart(model) {
    const test = model.faithfulness;
    if (!test) return null;
    const unit = test.unit;
    const part = el("div", { class: "part faithfulness-part" });
    part.append(el("h3", {}, "Faithfulness of relevance maps"));
    const orders = Object.keys(REMOVAL_ORDERS).filter((order) => test.curves.some((c) => c.order === order));
    part.append(el("p", { class: "note" },
      `The perturbation test of the unpruned model on ${test.n_examples} evaluated examples: ${unit} removed in the ` +
      "order of each map's relevance for the model's answer (random: a seeded random order), accuracy at each " +
      "fraction removed. " + orders.map((order) => {
        const o = REMOVAL_ORDERS[order];
        return `${order} order (${o.first} first): ${o.why}, ${o.better} AUC is better.`;
      }).join(" ")));
    const name = (c) => `${c.method} · ${c.order} (${REMOVAL_ORDERS[c.order].first} ${unit} first)`;
    const fractions = test.curves[0].fractions; // one test: the same fractions for every curve
    const panels = el("div", { class: "panels" });
    const range = valueRange(test.curves, ACCURACY);
    const shapes = new Map();
    for (const order of orders) {
      const members = test.curves.map((c, i) => [c, i]).filter(([c]) => c.order === order);
      const axes = {
        title: `${order}: ${REMOVAL_ORDERS[order].first} first (${REMOVAL_ORDERS[order].better} AUC is better)`,
        xlabel: `${unit} removed (%)`, ticks: fractions, xs: (c) => c.fractions, colours: COLOURS.maps,
        name: name, point: (c, i) => `${pct(c.fractions[i])} of the ${unit} removed`,
      };
      panels.append(curvePanel(axes, members, range, shapes, null));
    }
    const intervals = test.curves.some((c) => c.auc_low != null); // a test run without bootstrap has none
    const columns = [
      ["show", null], ["map", (c) => c.method], ["order", (c) => c.order],
      ["removed first", (c) => REMOVAL_ORDERS[c.order].first], ["better AUC", (c) => REMOVAL_ORDERS[c.order].better],
      ["AUC", (c) => c.auc], ...(intervals ? [INTERVAL_COLUMN] : []),
      [`at ${pct(fractions[fractions.length - 1])} removed`, lastAccuracy],
    ];
    const note = "AUC = trapz(accuracy / 100, fractions) × 100" +
      (intervals ? "; 95 % interval: bootstrap over the tested examples (shaded around each curve)" : "") +
      ". Click a column to sort, a box to show or hide its curve ";
    part.append(el("div", { class: "row" }, panels, aucTable(test.curves, columns, shapes, COLOURS.maps, note)));
    return part;
  }

  // --- the sites × heads grid --------------------------------------------------------------
  function gridSources(model) {
    const sources = [];
    for (const [method, scores] of Object.entries(model.scores)) {
      sources.push({
        label: `${method}: global mean scores`,
        scores: scores,
        options: model.pruned[method] || {},
        pruned: (order, unit, level) => (((model.pruned[method] || {})[order] || {})[unit] || [])[level] || [],
      });
    }
    model.examples.forEach((example) => {
      sources.push({
        label: `${example.id}: its own ${model.explain.score_method} scores`,
        scores: example.scores,
        options: { [model.explain.order]: { head: true } },
        pruned: (order, unit, level) => example.pruned[example.at[level]],
      });
    });
    return sources;
  }

  function gridPart(model, state, views, update) {
    if (!model.sites.length) return null;
    const part = el("div", { class: "part grid-part" });
    part.append(el("h3", {}, "Head scores, sites × heads"));
    const sources = gridSources(model);
    if (!sources.length) {
      part.append(el("p", { class: "note" }, "No head scores in this run (no global protocol and no explained example)."));
      return part;
    }
    const pick = el("select", { class: "source" });
    sources.forEach((source, i) => pick.append(el("option", { value: i }, source.label)));
    const order = el("select", { class: "order" });
    const unit = el("select", { class: "unit" });
    const refill = () => {
      const options = sources[Number(pick.value)].options;
      const keep = [order.value, unit.value];
      order.textContent = "";
      Object.keys(options).forEach((o) => order.append(el("option", { value: o }, o + " order")));
      if (Object.keys(options).includes(keep[0])) order.value = keep[0];
      unit.textContent = "";
      Object.keys(options[order.value] || {}).forEach((u) => unit.append(el("option", { value: u }, "by " + u)));
      if ([...unit.options].some((o) => o.value === keep[1])) unit.value = keep[1];
    };
    pick.addEventListener("change", () => { refill(); update(); });
    order.addEventListener("change", () => { refill(); update(); });
    unit.addEventListener("change", update);
    refill();
    part.append(el("div", { class: "controls" }, el("label", {}, "colour by ", pick), el("label", {}, " pruned in ", order),
                   unit));
    const heads = model.heads, sites = model.sites;
    const cell = clamp(Math.floor(560 / heads), 10, 22), left = 110, top = 18;
    const width = left + heads * cell + 10, height = top + sites.length * cell + 4;
    const grid = svg("svg", { class: "grid", width: width, height: height, viewBox: `0 0 ${width} ${height}` });
    for (let h = 0; h < heads; h++) {
      const text = svg("text", { x: left + (h + 0.5) * cell, y: top - 5, class: "tick", "text-anchor": "middle" });
      text.textContent = h;
      grid.append(text);
    }
    const cells = [];
    sites.forEach((site, s) => {
      const text = svg("text", { x: left - 5, y: top + (s + 0.5) * cell + 3, class: "site-label", "text-anchor": "end" });
      text.textContent = site.name;
      grid.append(text);
      for (let h = 0; h < heads; h++) {
        const rect = svg("rect", { class: "cell", x: left + h * cell, y: top + s * cell, width: cell - 1, height: cell - 1,
                                   "data-site": s, "data-head": h });
        rect.addEventListener("click", () => {
          state.head = { site: s, head: h };
          update();
        });
        cells.push(rect);
        grid.append(rect);
      }
    });
    const legend = el("div", { class: "legend" });
    const info = el("p", { class: "grid-info" });
    part.append(el("div", { class: "row" }, grid, el("div", {}, legend, info)));
    views.push(() => {
      const source = sources[Number(pick.value)];
      const flat = source.scores.flat();
      const bound = Math.max(...flat.map(Math.abs)) || 1;
      const pruned = new Set(source.pruned(order.value, unit.value, state.level));
      cells.forEach((rect, i) => {
        const s = Math.floor(i / heads), h = i % heads, value = flat[i];
        rect.setAttribute("fill", signedColour(value / bound));
        rect.classList.toggle("pruned", pruned.has(i));
        rect.classList.toggle("selected", !!state.head && state.head.site === s && state.head.head === h);
        rect.onmousemove = (event) => showTip(event, `${sites[s].name} head ${h}: ${fmt(value)}` +
          (pruned.has(i) ? " (pruned at this level)" : ""));
        rect.onmouseleave = hideTip;
      });
      legend.textContent = "";
      legend.append(colourBar((t) => signedColour(2 * t - 1), fmt(-bound), fmt(bound), "signed score"));
      info.textContent = `${pruned.size} of ${cells.length} heads greyed: pruned at ${pct(model.levels[state.level])} ` +
        `(${order.value} order: ${order.value === "negative" ? "lowest" : "highest"} scores first). ` +
        "Click a head to see its maps in the examples below.";
    });
    return part;
  }

  function colourBar(colour, low, high, caption) {
    const canvas = el("canvas", { width: 160, height: 10, class: "colour-bar" });
    const ctx = canvas.getContext("2d");
    for (let i = 0; i < 160; i++) {
      ctx.fillStyle = colour(i / 159);
      ctx.fillRect(i, 0, 1, 10);
    }
    return el("div", { class: "bar" }, el("span", {}, low), canvas, el("span", {}, high), el("span", { class: "caption" }, caption));
  }

  // --- explained examples -------------------------------------------------------------------
  function examplesPart(model, state, views, images) {
    if (!model.examples.length) return null;
    const part = el("div", { class: "part examples-part" });
    const explain = model.explain;
    part.append(el("h3", {}, "Explained examples"));
    part.append(el("p", { class: "note" },
      `Each example's own ranking by ${explain.score_method} (${explain.order} order) prunes its heads; relevance by ` +
      `${explain.map_method} with the pruned heads zeroed in the head averages; the answer is the pruned model's. ` +
      "One colour scale per example, shared by its levels."));
    for (const example of model.examples) part.append(exampleCard(model, example, state, views, images));
    return part;
  }

  function exampleCard(model, example, state, views, images) {
    const card = el("div", { class: "example", "data-example": example.id });
    card.append(el("h4", {}, example.question + " ", el("span", { class: "id" }, example.id)));
    const answer = el("p", { class: "answer" });
    card.append(answer);
    const body = el("div", { class: "row" });
    card.append(body);
    let drawOverlay = () => null;
    if (example.image) {
      const canvas = el("canvas", { class: "overlay", width: example.width, height: example.height });
      canvas.style.width = clamp(example.width, 256, 320) + "px";
      const picture = new Image();
      let loaded = false;
      drawOverlay = () => {
        if (loaded) paintOverlay(canvas, picture, example, example.at[state.level]);
      };
      images.push(new Promise((resolve) => {
        picture.addEventListener("load", () => { loaded = true; drawOverlay(); resolve(); });
        picture.addEventListener("error", () => resolve());
      }));
      picture.src = example.image;
      body.append(el("div", { class: "figure" }, canvas, colourBar((t) => cssRGBA(relevanceRGBA(t)), "0",
                                                                    fmt(example.image_scale), "box relevance")));
    }
    const side = el("div", { class: "side" });
    body.append(side);
    const strip = el("div", { class: "tokens" });
    if (example.tokens.length && example.text) side.append(strip);
    const maps = el("div", { class: "maps" });
    side.append(maps);
    let shownHead = undefined;
    views.push(() => {
      const at = example.at[state.level];
      const level = example.levels[at];
      const said = example.answers[at];
      const verdict = example.label === null ? "" : said === example.label ? " ✓" : ` ✗ (label: ${example.label})`;
      answer.textContent = `${pct(level)} of heads pruned (${example.pruned[at].length} of ${model.sites.length * model.heads}): ` +
        `answer ${said}${verdict}`;
      drawOverlay();
      if (example.tokens.length && example.text) paintTokens(strip, example, at);
      const key = state.head ? state.head.site + "/" + state.head.head : null;
      if (key !== shownHead) {
        shownHead = key;
        paintMaps(maps, model, example, state.head);
      }
    });
    return card;
  }

  function paintOverlay(canvas, picture, example, at) {
    const width = example.width, height = example.height;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, width, height);
    ctx.drawImage(picture, 0, 0, width, height);
    const scores = example.image_relevance[at];
    const mask = new Float32Array(width * height);
    let best = -1, bestValue = -Infinity, lowest = Infinity;
    example.boxes.forEach((box, p) => {
      if (!box) return;
      const value = scores[p];
      if (value > bestValue) { bestValue = value; best = p; }
      lowest = Math.min(lowest, value);
      const v = clamp(value / example.image_scale, 0, 1);
      const x1 = Math.max(Math.floor(box[0]), 0), y1 = Math.max(Math.floor(box[1]), 0);
      const x2 = Math.min(Math.ceil(box[2]), width), y2 = Math.min(Math.ceil(box[3]), height);
      for (let yy = y1; yy < y2; yy++) {
        for (let xx = x1; xx < x2; xx++) mask[yy * width + xx] = Math.max(mask[yy * width + xx], v);
      }
    });
    const layer = document.createElement("canvas");
    layer.width = width;
    layer.height = height;
    const pixels = layer.getContext("2d").createImageData(width, height);
    for (let i = 0; i < mask.length; i++) {
      const c = relevanceRGBA(mask[i]);
      pixels.data.set([c[0], c[1], c[2], Math.round(255 * c[3])], 4 * i);
    }
    layer.getContext("2d").putImageData(pixels, 0, 0);
    ctx.drawImage(layer, 0, 0);
    example.boxes.forEach((box, p) => {
      if (!box) return;
      ctx.strokeStyle = p === best && bestValue > lowest ? "#000" : "#fff";
      ctx.lineWidth = 1;
      ctx.strokeRect(Math.floor(box[0]) + 0.5, Math.floor(box[1]) + 0.5, Math.ceil(box[2] - box[0]) - 1,
                     Math.ceil(box[3] - box[1]) - 1);
    });
    canvas.dataset.level = at;
  }

  function paintTokens(strip, example, at) {
    strip.textContent = "";
    example.tokens.forEach((token, i) => {
      const value = example.text[at][i];
      const glued = token.startsWith("##");
      const span = el("span", { class: "token" + (glued ? " glued" : "") }, glued ? token.slice(2) : token);
      span.style.background = cssRGBA(relevanceRGBA(value / example.text_scale));
      hoverText(span, `${token}: ${fmt(value)}`);
      strip.append(span);
    });
    strip.append(colourBar((t) => cssRGBA(relevanceRGBA(t)), "0", fmt(example.text_scale), "token relevance"));
  }

  function paintMaps(container, model, example, chosen) {
    container.textContent = "";
    if (!chosen) {
      container.append(el("p", { class: "note" }, "Click a head in the grid to see its attention and ∂z/∂A ⊙ A here."));
      return;
    }
    const site = model.sites[chosen.site];
    const rows = streamLabels(example, site.query), cols = streamLabels(example, site.key);
    const score = example.scores[chosen.site][chosen.head];
    container.append(el("p", { class: "map-title" },
      `${site.name} head ${chosen.head} (queries: ${site.query}, keys: ${site.key}); its own score ${fmt(score)}`));
    const row = el("div", { class: "row" });
    for (const [kind, title, signed] of [["attn", "attention A", false], ["gradattn", "∂z/∂A ⊙ A", true]]) {
      const map = decodeMap(example.maps[kind][chosen.site]);
      row.append(mapCanvas(map, chosen.head, rows, cols, title, signed));
    }
    container.append(row);
  }

  function mapCanvas(map, head, rows, cols, title, signed) {
    const [, nq, nk] = map.shape;
    const cell = clamp(Math.floor(240 / Math.max(nq, nk, 1)), 3, 16);
    const labelled = cell >= 8;
    const margin = labelled ? 6 + 6 * Math.min(12, Math.max(...rows.concat(cols).map((l) => l.length), 1)) : 4;
    const canvas = el("canvas", { class: "headmap", width: margin + nk * cell + 2, height: margin + nq * cell + 2,
                                  "data-kind": signed ? "gradattn" : "attn" });
    const ctx = canvas.getContext("2d");
    const scale = map.scale[head];
    const value = (r, c) => (map.q[(head * nq + r) * nk + c] / 127) * scale;
    for (let r = 0; r < nq; r++) {
      for (let c = 0; c < nk; c++) {
        const t = scale ? value(r, c) / scale : 0;
        ctx.fillStyle = signed ? signedColour(t) : cssRGBA(lookup(COLOURS.relevance, t));
        ctx.fillRect(margin + c * cell, margin + r * cell, cell, cell);
      }
    }
    if (labelled) {
      ctx.fillStyle = "#222";
      ctx.font = "10px sans-serif";
      ctx.textAlign = "right";
      rows.forEach((label, r) => ctx.fillText(label.slice(0, 12), margin - 3, margin + (r + 0.5) * cell + 3));
      ctx.save();
      ctx.rotate(-Math.PI / 2); // column labels run upwards from the top edge
      ctx.textAlign = "left";
      cols.forEach((label, c) => ctx.fillText(label.slice(0, 12), -(margin - 3), margin + (c + 0.5) * cell + 3));
      ctx.restore();
    }
    hoverText(canvas, (event) => {
      const bounds = canvas.getBoundingClientRect();
      const c = Math.floor((event.clientX - bounds.left - margin) / cell);
      const r = Math.floor((event.clientY - bounds.top - margin) / cell);
      if (r < 0 || c < 0 || r >= nq || c >= nk) return title;
      return `${title}: query ${rows[r]} → key ${cols[c]}: ${fmt(value(r, c))}`;
    });
    const range = signed ? `±${fmt(scale)}` : `0 … ${fmt(scale)}`;
    return el("figure", { class: "map" }, canvas, el("figcaption", {}, `${title} (${range}; rows: queries, columns: keys)`));
  }

  // --- provenance --------------------------------------------------------------------------
  function factsTable(pairs) {
    const table = el("table", { class: "facts" });
    for (const [key, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      const text = typeof value === "object" ? JSON.stringify(value) : String(value);
      table.append(el("tr", {}, el("th", {}, key), el("td", {}, el("code", {}, text))));
    }
    return table;
  }

  function provenanceSection() {
    const section = el("section", { class: "provenance", id: "provenance" });
    section.append(el("h2", {}, "Provenance"));
    const doc = DATA.provenance || {};
    section.append(factsTable([["run folder", DATA.run_dir], ["command", (doc.command || []).join(" ")],
                               ["headlens", doc.headlens], ["written (UTC)", doc.date]]));
    for (const model of DATA.models) {
      const p = model.provenance || {};
      section.append(el("h3", {}, model.name), factsTable([
        ["model family", p.model],
        ["checkpoint", p.checkpoint === null ? "none: a tiny random-init model" : p.checkpoint],
        ["checkpoint path", p.checkpoint_path], ["checkpoint sha256", p.checkpoint_sha256],
        ["data", p.data], ["seeds", p.seeds], ["command", (p.command || []).join(" ")],
        ["headlens", p.headlens], ["date (UTC)", p.date],
      ]));
      if (Object.keys(model.config || {}).length) {
        section.append(el("details", {}, el("summary", {}, "configuration"), el("pre", {}, JSON.stringify(model.config, null, 1))));
      }
    }
    return section;
  }

  build();
})();
