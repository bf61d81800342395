"""Rater pages, mounted at ``/r/``. The assignment token is the only task handle in a URL."""

from django.urls import path

from . import views

app_name = "rating"

urlpatterns = [
    path("<slug:slug>/", views.entry, name="entry"),
    path("<slug:slug>/consent/", views.consent, name="consent"),
    path("<slug:slug>/task/", views.task, name="task"),
    path("<slug:slug>/task/<str:token>/", views.submit, name="submit"),
    path("<slug:slug>/task/<str:token>/touch/", views.touch, name="touch"),
    path("<slug:slug>/done/", views.done, name="done"),
]
