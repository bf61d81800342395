from django.apps import AppConfig


class RatingConfig(AppConfig):
    name = "evalsite.rating"
    verbose_name = "Rating"
