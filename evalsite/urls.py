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
    path("platforms/", include("evalsite.platforms.urls")),
    path("", home, name="home"),
]

# Under /api/ a missing route or an unreadable request answers JSON, as the API's own errors do.
handler404 = "evalsite.edge.page_not_found"
handler400 = "evalsite.edge.bad_request"
