"""Style-versus-factuality analysis of pairwise ratings: pure functions over tidy tables.

No Django imports: the dashboard's loader turns a study into the tables defined in
:mod:`evalsite.analysis.schema`, and :func:`evalsite.analysis.report.build_report` does the rest.
"""

from .report import build_report
from .schema import make_ratings, make_responses

__all__ = ["build_report", "make_ratings", "make_responses"]
