"""URLconf for the dashboard tests, until the project mounts ``reports/`` itself."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("reports/", include("evalsite.dashboard.urls")),
]
