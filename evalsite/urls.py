"""URL map. Each app owns its own urls module; this file only mounts them."""

from django.contrib import admin
from django.urls import include, path

from evalsite.dashboard.study_pages import home

urlpatterns = [
    path("admin/", admin.site.urls),
    path("r/", include("evalsite.rating.urls")),
    path("api/", include("evalsite.api.urls")),
    path("reports/", include("evalsite.dashboard.urls")),
    path("studies/", include("evalsite.dashboard.study_urls")),
    path("", home, name="home"),
]
