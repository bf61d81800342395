"""Untrusted text (model answers, prompts, study Markdown) to safe HTML, and the plain-text view.

Model output is attacker-controlled as far as the rater page is concerned: markdown-it-py renders
it with raw HTML disabled, then nh3 (ammonia) keeps only a small allow-list of tags and
attributes. No scripts, no event handlers, no ``javascript:`` URLs, and no images at all (a remote
image would leak the rater's IP and could carry tracking; a data: image is not worth the risk).
"""

from __future__ import annotations

import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "del",
    "s",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}

# "commonmark" preset with tables; images are disabled in the parser, not just stripped later.
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
_md.disable("image")


@lru_cache(maxsize=8192)
def render_markdown(text: str) -> str:
    """Render untrusted Markdown to sanitized HTML (cached: the same answers are shown many times)."""
    return nh3.clean(
        _md.render(text or ""),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


_NEWLINES = re.compile(r"\r\n?")


def display_text(raw: str) -> str:
    """The raw text as a browser's DOM holds it: the HTML parser turns CR LF and lone CR into LF."""
    return _NEWLINES.sub("\n", raw)


def display_span_to_raw(raw: str, start: int, end: int) -> tuple[int, int]:
    """Map a ``[start, end)`` span in :func:`display_text` back to offsets into ``raw``.

    Raises ``ValueError`` when the span is empty or out of range.
    """
    shown = display_text(raw)
    if not 0 <= start < end <= len(shown):
        raise ValueError(f"characters {start}-{end} are outside the answer ({len(shown)} characters)")
    if len(shown) == len(raw):
        return start, end
    mapping: list[int] = []  # display offset -> raw offset
    i = 0
    while i < len(raw):
        mapping.append(i)
        i += 2 if raw.startswith("\r\n", i) else 1
    mapping.append(len(raw))
    return mapping[start], mapping[end]
