"""Crowd-platform routes, mounted by the project at ``platforms/``."""

from django.urls import path

from . import views

app_name = "platforms"

urlpatterns = [
    path("hooks/prolific/", views.prolific_webhook, name="prolific-webhook"),
    path("<slug:slug>/bonus/<int:pk>/", views.resolve, name="resolve"),
    path("<slug:slug>/<slug:platform>/<slug:op>/", views.action, name="action"),
]
