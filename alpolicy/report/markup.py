"""The one template layer of alpolicy's HTML pages: values are escaped unless marked as markup.

Why: a report shows what users typed (policy and rule names, tags, notes, class names, file
names), and one forgotten ``escape()`` in one page lets ``<script>`` through. So pages are not
built by pasting strings: :func:`html` fills a template whose every value is escaped, except a
:class:`Markup` (a fragment built by :func:`html` itself, or a trusted constant marked
explicitly). :func:`alpolicy.report.html.write_page` writes only :class:`Markup`, so a page made
any other way does not get written. The semantics are those of ``markupsafe`` (which is not a
dependency), reduced to what the pages use:

* ``html('<td title="{t}">{n:,}</td>', t=text, n=count)``: format specs apply first, then the
  result is escaped (quotes too, so values are safe inside attributes);
* ``Markup + str`` escapes the ``str``; ``Markup(sep).join(parts)`` escapes each plain part;
* :func:`escape` is idempotent on :class:`Markup` (nothing is escaped twice).

What this does not do: it does not make a URL safe for ``href`` (``javascript:`` stays
``javascript:``; :func:`alpolicy.report.html.href` vets schemes) nor text safe inside ``<style>``
or ``<script>`` (the pages put no data there).
"""

from __future__ import annotations

import html as _stdlib_html
import string
from typing import Any, Iterable


class Markup(str):
    """A string of HTML that is safe to insert as it is (already escaped, or a trusted constant)."""

    __slots__ = ()

    def __html__(self) -> "Markup":
        return self

    def __add__(self, other: object) -> "Markup":
        return Markup(str.__add__(self, escape(other)))

    def __radd__(self, other: object) -> "Markup":
        return Markup(str.__add__(escape(other), self))

    def join(self, parts: Iterable[object]) -> "Markup":  # type: ignore[override]
        return Markup(str.join(self, (escape(part) for part in parts)))

    def __repr__(self) -> str:
        return f"Markup({str.__repr__(self)})"


def escape(value: object) -> Markup:
    """``value`` as HTML text: ``& < > " '`` escaped; a :class:`Markup` is returned unchanged."""
    if isinstance(value, Markup):
        return value
    html_method = getattr(value, "__html__", None)
    if callable(html_method):
        return Markup(html_method())
    return Markup(_stdlib_html.escape(str(value), quote=True))


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Markup):
            return value if not format_spec else format(str(value), format_spec)
        return escape(format(value, format_spec))


_FORMATTER = _EscapingFormatter()


def html(template: str, /, *args: Any, **values: Any) -> Markup:
    """Fill ``template`` (``str.format`` syntax; the template itself is trusted) with escaped values."""
    return Markup(_FORMATTER.vformat(template, args, values))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    """The parts one after the other; plain strings among them are escaped."""
    return Markup(separator).join(parts)
