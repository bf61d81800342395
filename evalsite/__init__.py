"""evalsite: human evaluation of LLMs that separates style from factuality.

Nothing is imported here: ``evalsite.analysis`` must import without Django or Celery. The Celery app
is ``evalsite.celery`` (``celery -A evalsite.celery worker``).
"""
