from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "evalsite.generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        # Every Django process (web, commands, workers) loads the Celery app here, so tasks sent or
        # run from it use the project's broker settings. ``evalsite/__init__.py`` stays empty so
        # that ``evalsite.analysis`` imports without Django or Celery.
        from evalsite import celery  # noqa: F401
