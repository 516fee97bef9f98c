"""The inference worker's side of Celery: the pipeline tasks and the per-process warm-up.

Only worker processes import this package (through CELERY_IMPORTS): it loads torch, OpenCV and
MediaPipe. The web process sends these tasks by name and never imports them.
"""
