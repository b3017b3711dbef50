"""One self-contained HTML page: the template with its style, script and data inlined.

The style (``report.css``), the script (``report.js``, plain JavaScript drawing SVG and
canvas) and the template (``report.html``) are package files of :mod:`headlens.report`;
the data is one ``<script type="application/json">`` element. Nothing in the page names
another host or file: it opens from ``file://`` with no network, in any current browser.
"""

from __future__ import annotations

import html
import json
from importlib import resources

#: the template's placeholders, replaced in this order (the data last: it may contain anything).
PLACEHOLDERS = ("<!--TITLE-->", "/*STYLE*/", "/*SCRIPT*/", "<!--DATA-->")


def asset(name: str) -> str:
    """The text of one of the page's package files."""
    return (resources.files("headlens.report") / name).read_text(encoding="utf-8")


def embed_json(data) -> str:
    """``data`` as JSON that is safe inside ``<script>``: every ``<`` written ``\\u003c`` (JSON
    allows it only inside strings, where this escape means the same), so no ``</script>`` or
    ``<!--`` can end or change the element. NaN and infinities are refused (JSON has none)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False).replace("<", "\\u003c")


def build_page(data: dict) -> str:
    """The page of ``data`` (from :func:`headlens.report.data.page_data`)."""
    style, script = asset("report.css"), asset("report.js")
    for name, text, closing in (("report.css", style, "</style"), ("report.js", script, "</script")):
        if closing in text.lower():
            raise ValueError(f"{name} contains {closing!r}, which would end its element early")
    page = asset("report.html")
    for placeholder, text in zip(PLACEHOLDERS, (html.escape(data["title"]), style, script, embed_json(data))):
        if page.count(placeholder) != 1:
            raise ValueError(f"report.html must hold {placeholder} once")
        before, after = page.split(placeholder)
        page = before + text + after
    return page
