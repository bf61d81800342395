"""Generation as a domain: jobs, claiming and heartbeats, saving answers, the study's status.

``actions`` holds what a person triggers (start and cancel generation); ``jobs`` creates and enqueues
jobs and moves the study; ``claims`` makes one run hold a job at a time; ``runner`` generates a job's
missing answers batch by batch and ``answers`` writes them; ``judge`` asks an LLM judge. The Celery
tasks in ``workers/`` only call into this package; this package sends them by name and never imports
them. Backends (``workers.backends``) are imported by the runner only, so the web process never loads one.
"""
