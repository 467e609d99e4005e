"""Display-time HTML sanitising of inbound mail: the stored HTML is kept as received, shown only through this."""

from __future__ import annotations

import re

import nh3

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "div", "dl", "dt", "em",
    "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
    "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "*": {"title", "align", "dir", "lang"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    # Outlook's table backgrounds: kept only as a stored inline part (`_keep_inline_images_only`).
    "table": {"background"},
    "td": {"colspan", "rowspan", "background"},
    "th": {"colspan", "rowspan", "background"},
    "font": {"color"},
}


_STORED_PART = re.compile(r"^/tickets/\d{1,12}/attachments/\d{1,12}$")


def _keep_inline_images_only(tag: str, attribute: str, value: str) -> str | None:
    # Remote images are tracking pixels: a staff member opening a ticket must not tell
    # the sender so. Only cid: (inline parts) survive; data: URLs are dropped everywhere
    # (issue 12 item 14: an SVG or HTML document smuggled in a data: URL is active content).
    if attribute == "background":  # never a remote image, nor an unresolved cid: (a background cannot show one)
        return value if _STORED_PART.match(value.strip()) else None
    if tag == "img" and attribute == "src":
        # An inline part rewritten at ingest (app.mail.inbound: cid: -> the stored attachment, same origin) survives too.
        return value if value.strip().lower().startswith("cid:") or _STORED_PART.match(value) else None
    return value


def sanitise_html(html: str | None) -> str:
    """Allowlisted HTML safe to put into a page: no scripts, styles, event handlers, forms or remote images."""
    if not html:
        return ""
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "cid"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_keep_inline_images_only,
        strip_comments=True,
    )
