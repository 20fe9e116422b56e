"""Long-running processes that are not Celery tasks: the stream worker and its journal."""
