"""Number formatting for report pages: percentages, intervals, ratings."""

from django import template

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
