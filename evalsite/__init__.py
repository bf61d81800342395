"""evalsite: human evaluation of LLMs that separates style from factuality."""

from .celery import app as celery_app

__all__ = ["celery_app"]
