"""Assemble one self-contained HTML page from the package's static assets (``report/assets/``).

A page is its template with the shared CSS, its script and its data inlined, so it opens from disk with no
server and no network: ``/*@CSS@*/``, ``/*@JS@*/`` and ``/*@DATA@*/`` in the template are replaced, and
``@TITLE@`` by the HTML-escaped title. The data goes in a ``<script type="application/json">`` element; ``<``
is escaped in it so no string in the data (a video name, an answer) can close the element.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from typing import Any


def read_asset(name: str) -> str:
    """The text of ``report/assets/{name}``."""
    return resources.files("tvau_lightning.report").joinpath("assets", name).read_text(encoding="utf-8")


def json_for_html(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (``<``, ``>``, ``&`` and the JS line separators escaped; NaN and
    infinities become ``null``, which JSON cannot hold)."""
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render_page(template: str, script: str, data: Any, title: str) -> str:
    """The page ``assets/{template}`` with ``assets/report.css``, ``assets/{script}`` and ``data`` inlined."""
    page = read_asset(template)
    for marker, text in (("/*@CSS@*/", read_asset("report.css")), ("/*@JS@*/", read_asset(script)),
                         ("/*@DATA@*/", json_for_html(data)), ("@TITLE@", html.escape(title))):
        if marker not in page:
            raise RuntimeError(f"report template {template} lacks the marker {marker}")
        page = page.replace(marker, text)
    return page
