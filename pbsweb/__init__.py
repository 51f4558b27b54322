# The Celery app (pbsweb/celery.py) is not imported here, so that Django alone starts
# the command line fast (docs/DESIGN.md §1): `celery -A pbsweb` finds
# it as `pbsweb.celery.app`, the web server loads it in pbsweb/wsgi.py, and
# pbsweb.worker.celery_app() when a task is queued.
