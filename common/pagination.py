"""Limit/offset pages with bounds: a limit over MAX_LIMIT is cut to it, and an offset past what PostgreSQL's
bigint holds is clamped (an empty page) instead of the database refusing the query with a 500."""

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000
MAX_OFFSET = 2**63 - 1 - MAX_LIMIT


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_offset(self, request):
        return min(super().get_offset(request), MAX_OFFSET)
