"""Layer `celery`: no checks registered yet."""
