"""A URLconf with only the API mounted, for measuring the export's own memory (see the memory test)."""

from django.urls import include, path

urlpatterns = [path("api/", include("evalsite.api.urls"))]
