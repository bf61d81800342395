"""The researcher's study pages. Mounted by the project at ``studies/``."""

from django.urls import path

from . import preview, study_pages

app_name = "studies"

urlpatterns = [
    path("", study_pages.index, name="index"),
    path("<slug:slug>/", study_pages.study_home, name="home"),
    path("<slug:slug>/invite/", study_pages.invite, name="invite"),
    path("<slug:slug>/preview/", preview.task_preview, name="preview"),
    path("<slug:slug>/step/<slug:name>/", study_pages.step, name="step"),
]
