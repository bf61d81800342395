"""Staff report pages. Mounted by the project at ``reports/``."""

from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:slug>/", views.study_report, name="report"),
    path("<slug:slug>/recompute", views.recompute, name="recompute"),
    path("<slug:slug>/report.html", views.download_html, name="download_html"),
    path("<slug:slug>/report.json", views.download_json, name="download_json"),
]
