"""Launchers of the real servers the lab runs: redis, postgres, nginx, traefik, fake-gcs, gunicorn, celery."""
