"""HTML mail made safe: readable text for tickets and replies, sanitised HTML for agents.

Mail HTML is hostile by default (scripts, event handlers, javascript: links, remote images that
report when a mail is read), so the only HTML we keep is what passes an allowlist.
"""

from __future__ import annotations

import re

import nh3
from inscriptis import get_text
from inscriptis.model.config import ParserConfig

_TEXT_CONFIG = ParserConfig(display_links=True)

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup", "dd",
    "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
}
_ATTRIBUTES = {
    "*": {"title", "dir", "lang", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign"},
    "th": {"colspan", "rowspan", "valign", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type"},
    "font": {"color"},
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid", "data"}
# Inline images the browser shows without fetching anything; SVG can carry script.
_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpeg|jpg|webp|bmp);", re.IGNORECASE)


def html_to_text(html: str, defects: list[str] | None = None) -> str:
    """HTML to readable text with inscriptis: layout kept, links kept, no CSS or script text."""
    try:
        return get_text(html, _TEXT_CONFIG).strip("\n")
    except Exception:  # a parser bug must not lose the mail's words
        if defects is not None:
            defects.append("unreadable HTML")
        return re.sub(r"<[^>]*>", " ", html)


def sanitise_html(html: str) -> str:
    """HTML safe to show an agent: allowlisted tags and attributes, links that leak nothing,
    and only images the mail itself carries (cid:) or embeds (data:)."""
    try:
        return nh3.clean(
            html,
            tags=_TAGS,
            clean_content_tags={"script", "style", "title", "head"},
            attributes=_ATTRIBUTES,
            attribute_filter=_filter_attribute,
            url_schemes=_URL_SCHEMES,
            link_rel="noopener noreferrer nofollow",
            url_relative="deny",
            strip_comments=True,
        )
    except Exception:  # nh3 rejects nothing we know of; never fall back to the raw HTML
        return ""


def _filter_attribute(tag: str, attr: str, value: str) -> str | None:
    """img src only from the mail itself; no data: links, which can carry whole pages."""
    lowered = value.strip().lower()
    if tag == "img" and attr == "src":
        return value if lowered.startswith("cid:") or _DATA_IMAGE.match(lowered) else None
    if attr == "href" and lowered.startswith(("data:", "cid:")):
        return None
    return value
