import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbsweb.settings")
application = get_wsgi_application()

# After settings are loaded: the data directory 0700, database and keys 0600 at every start.
from pbsweb.paths import secure_data_dir  # noqa: E402

secure_data_dir()

# The web server queues tasks and draws the dashboard: Celery and the apps' deferred
# registrations load at start rather than on the first request (the command line does
# without them, docs/DESIGN.md §1).
import pbsweb.celery  # noqa: E402,F401
from pbsweb.registry import registry  # noqa: E402

registry.load()
