"""Quality figures over the API: the agreement report and the model leaderboard of a project."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response as HttpResponse

from common.permissions import CanReadData
from common.views import ProjectView

from ...quality.bootstrap import DEFAULT_LEVEL
from ...quality.report import leaderboard_report, quality_report
from ...quality.selectors import ALL_SOURCES

# Interactive requests get fewer resamples than the command line's default of 1000.
API_RESAMPLES = 500


class QualityQuery(serializers.Serializer):
    sources = serializers.CharField(required=False, default=",".join(ALL_SOURCES), help_text="comma-separated: human, ai")
    resamples = serializers.IntegerField(required=False, default=API_RESAMPLES, min_value=0, max_value=5000)
    level = serializers.FloatField(required=False, default=DEFAULT_LEVEL, min_value=0.5, max_value=0.999)
    seed = serializers.IntegerField(required=False, default=0, min_value=0)

    def validate_sources(self, value: str) -> list[str]:
        # Runs on the default too, so callers always get a list.
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not values or set(values) - set(ALL_SOURCES):
            raise serializers.ValidationError(f"must be a comma-separated subset of {', '.join(ALL_SOURCES)}")
        return values


class LeaderboardQuery(QualityQuery):
    anchor = serializers.CharField(required=False, allow_blank=True, default="", help_text="model rated 1000")


def _query(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class QualityView(ProjectView):
    """Agreement per kind, aspect, annotator, guideline version and source, with bootstrap intervals."""

    permissions_by_method = {"*": [CanReadData]}

    @extend_schema(parameters=[QualityQuery], responses={200: OpenApiTypes.OBJECT})
    def get(self, request, slug):
        q = _query(QualityQuery, request)
        report = quality_report(
            project=self.project, sources=q["sources"], n_resamples=q["resamples"], level=q["level"], seed=q["seed"]
        )
        return HttpResponse(report)


class LeaderboardView(ProjectView):
    """Bradley-Terry ratings (Elo scale) of the models whose responses were judged."""

    permissions_by_method = {"*": [CanReadData]}

    @extend_schema(parameters=[LeaderboardQuery], responses={200: OpenApiTypes.OBJECT})
    def get(self, request, slug):
        q = _query(LeaderboardQuery, request)
        board = leaderboard_report(
            project=self.project,
            sources=q["sources"],
            anchor=q["anchor"] or None,
            n_resamples=q["resamples"],
            level=q["level"],
            seed=q["seed"],
        )
        return HttpResponse(board)
