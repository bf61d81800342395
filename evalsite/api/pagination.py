"""Offset paging with bounds: ``?limit=`` is capped, and an offset past any real table is clamped.

DRF's ``LimitOffsetPagination`` takes any ``limit`` and ``offset`` that parse as integers; one past
PostgreSQL's bigint range made the database refuse the query (a 500).
"""

from rest_framework import pagination

MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """``?limit=`` from 1 to 1000 (larger asks get 1000), ``?offset=`` from 0; bad values: the defaults."""

    max_limit = MAX_LIMIT

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
