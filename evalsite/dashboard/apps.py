from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "evalsite.dashboard"
    verbose_name = "Reports"
