import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbsweb.settings")
application = get_wsgi_application()

# After settings are loaded: the data directory 0700, database and keys 0600 at every start.
from pbsweb.paths import secure_data_dir  # noqa: E402

secure_data_dir()

# The web server queues tasks: Celery loads at start rather than on the first queued task
# (the command line does without it, docs/DESIGN.md §1 "Heavy imports").
import pbsweb.celery  # noqa: E402,F401
