from django.apps import AppConfig


class PlatformsConfig(AppConfig):
    name = "evalsite.platforms"
    verbose_name = "Crowd platforms"
