"""Number formatting for report pages: percentages, intervals, ratings."""

from django import template
from django.utils.html import format_html

register = template.Library()

DASH = "–"


def _number(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@register.filter
def pct(value, digits: int = 0) -> str:
    """0.4123 -> "41%"; missing -> an en dash."""
    v = _number(value)
    return DASH if v is None else f"{100 * v:.{int(digits)}f}%"


@register.filter
def num(value, digits: int = 2) -> str:
    v = _number(value)
    return DASH if v is None else f"{v:.{int(digits)}f}"


def _bounds(row, key: str):
    if not isinstance(row, dict):
        return None, None
    lo_key, hi_key = (f"{key}_lo", f"{key}_hi") if key else ("lo", "hi")
    return _number(row.get(lo_key)), _number(row.get(hi_key))


@register.filter
def ci_pct(row, key: str = "") -> str:
    """The interval ``row[key_lo]``–``row[key_hi]`` (or ``lo``/``hi``) as percentages."""
    lo, hi = _bounds(row, key)
    return "" if lo is None or hi is None else f"[{100 * lo:.0f}, {100 * hi:.0f}]%"


@register.filter
def ci_num(row, key: str = "") -> str:
    lo, hi = _bounds(row, key)
    return "" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"


@register.filter
def ci_int(row, key: str = "") -> str:
    lo, hi = _bounds(row, key)
    return "" if lo is None or hi is None else f"[{lo:.0f}, {hi:.0f}]"


@register.filter
def get(mapping, key):
    """``mapping[key]`` in a template (for keys that are not identifiers)."""
    return mapping.get(key) if isinstance(mapping, dict) else None


def _zero_width(lo, hi) -> bool:
    return lo is not None and hi is not None and abs(hi - lo) < 1e-12


@register.filter
def ci_flag(row, key: str = "") -> str:
    """What a reader must know about an interval: its warning (too few prompts, Wilson used) or
    that it has zero width; empty when there is nothing to say."""
    if not isinstance(row, dict):
        return ""
    warning = row.get("warning")
    if warning:
        return str(warning)
    lo, hi = _bounds(row, key)
    if _zero_width(lo, hi):
        return "zero-width interval: every resample gives the same value"
    return ""


@register.filter
def strength_cell(row) -> str:
    """A Bradley-Terry rating cell: "1089 [1032, 1157]", or the reason there is no number
    (never lost: a bound; separated; not identified; too few prompts for an interval)."""
    if not isinstance(row, dict):
        return format_html('<span class="muted">{}</span>', DASH)
    if not row.get("identified"):
        reason = row.get("note") or row.get("warning") or "not identified"
        return format_html('<span class="warn flag">{}</span>', reason)
    text = f"{_number(row.get('elo')):.0f}"
    interval = ci_int(row, "elo")
    flag = row.get("warning") or ("zero-width interval" if _zero_width(*_bounds(row, "elo")) else "")
    return format_html(
        '{} <span class="ci">{}</span>{}',
        text,
        interval,
        format_html(' <span class="warn flag">{}</span>', flag) if flag else "",
    )
