"""API routes: ``v1/`` (router + exports + token), the OpenAPI schema and its docs page."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView, _get_sidecar_url
from rest_framework.routers import DefaultRouter

from . import export, export_training, views

router = DefaultRouter()
router.register("studies", views.StudyViewSet, basename="study")
router.register("models", views.LanguageModelViewSet, basename="languagemodel")
router.register("prompts", views.PromptViewSet, basename="prompt")
router.register("responses", views.ResponseViewSet, basename="response")
router.register("comparisons", views.ComparisonViewSet, basename="comparison")
router.register("ratings", views.RatingViewSet, basename="rating")
router.register("generation-jobs", views.GenerationJobViewSet, basename="generationjob")


class SidecarSwaggerView(SpectacularSwaggerView):
    """Swagger UI served from drf-spectacular-sidecar's static files: no CDN needed."""

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return _get_sidecar_url(f"swagger-ui-dist/{filename}")

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return _get_sidecar_url("swagger-ui-dist/favicon-32x32.png")


v1 = [
    path("auth/token/", views.ObtainTokenView.as_view(), name="api-token"),
    path("studies/<slug:slug>/ratings.csv", export.RatingsCSVExport.as_view(), name="export-ratings-csv"),
    path("studies/<slug:slug>/ratings.jsonl", export.RatingsJSONLExport.as_view(), name="export-ratings-jsonl"),
    path(
        "studies/<slug:slug>/preference-pairs.jsonl",
        export.PreferencePairsExport.as_view(),
        name="export-preference-pairs",
    ),
    path("studies/<slug:slug>/trl-pairs.jsonl", export_training.TRLPairsJSONLExport.as_view(), name="export-trl-jsonl"),
    path(
        "studies/<slug:slug>/trl-pairs.parquet",
        export_training.TRLPairsParquetExport.as_view(),
        name="export-trl-parquet",
    ),
    path(
        "studies/<slug:slug>/mt-bench-judgments.jsonl",
        export_training.MTBenchJudgmentsExport.as_view(),
        name="export-mt-bench-judgments",
    ),
    path("", include(router.urls)),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SidecarSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
