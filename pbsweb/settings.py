"""Settings for pbsweb (docs/DESIGN.md §7).

Everything a deployment changes comes from the environment:
PBSWEB_DATA_DIR, DATABASE_URL, CELERY_BROKER_URL, PBSWEB_NODE, PBSWEB_NODE_ADDRESS, PBSWEB_DEBUG,
PBSWEB_ALLOWED_HOSTS; `firstrun` keeps the host names it found in DATA_DIR/settings.json.
"""
import json
import os
import socket
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("PBSWEB_DATA_DIR", BASE_DIR / "var")).resolve()
TASK_LOG_DIR = DATA_DIR / "tasks"
NODE_NAME = os.environ.get("PBSWEB_NODE") or socket.gethostname().split(".")[0] or "localhost"
# How backup clients reach this node's web server (HOST[:PORT]); Show Connection Information of a
# store on this node names it (README "Deployment: several worker nodes").
NODE_ADDRESS = os.environ.get("PBSWEB_NODE_ADDRESS") or f"{NODE_NAME}:{os.environ.get('PBSWEB_PORT') or 8007}"

DEBUG = os.environ.get("PBSWEB_DEBUG", "") == "1"

# Loopback always answers; other names and addresses come from PBSWEB_ALLOWED_HOSTS (comma list)
# or from the settings file `firstrun` writes with this host's names and addresses.
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
SETTINGS_FILE = DATA_DIR / "settings.json"


def _saved_settings() -> dict:
    try:
        return json.loads(SETTINGS_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _allowed_hosts() -> list[str]:
    from_env = os.environ.get("PBSWEB_ALLOWED_HOSTS")
    hosts = from_env.split(",") if from_env is not None else _saved_settings().get("allowed_hosts", [])
    return LOOPBACK_HOSTS + [h.strip() for h in hosts if h.strip() and h.strip() not in LOOPBACK_HOSTS]


ALLOWED_HOSTS = _allowed_hosts()


def _django_secret_key() -> str:
    """Kept in the data directory (mode 0600) so sessions survive restarts."""
    path = DATA_DIR / "django-secret.key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex())
    return path.read_text().strip()


SECRET_KEY = _django_secret_key()

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "pbsweb",
    "datastores",
    "remotes",
    "syncjobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "pbsweb.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "pbsweb.api.CsrfPreventionTokenMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "pbsweb.access.LoginRequiredMiddleware",
]

ROOT_URLCONF = "pbsweb.urls"
WSGI_APPLICATION = "pbsweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "pbsweb.context.navigation",
            ],
            "builtins": ["pbsweb.templatetags.pbsweb_tags"],
        },
    },
]


def _database_from_env() -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        return dj_database_url.parse(url, conn_max_age=60)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PBSWEB_SQLITE_PATH") or DATA_DIR / "db.sqlite3",
        # Web, worker and beat share the file: wait for locks, use WAL.
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"},
        "TEST": {"NAME": str(DATA_DIR / "test-db.sqlite3")},
    }


DATABASES = {"default": _database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = []
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
SESSION_COOKIE_AGE = 2 * 3600  # PBS tickets live two hours
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_SECURE = os.environ.get("PBSWEB_TLS", "1") == "1" and not os.environ.get("PBSWEB_INSECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_FAILURE_VIEW = "pbsweb.api.csrf_failure"  # the API answers JSON
SECURE_PROXY_SSL_HEADER = None
# Browsers keep to HTTPS for this host once they saw it over HTTPS (sent only on HTTPS answers).
SECURE_HSTS_SECONDS = int(os.environ.get("PBSWEB_HSTS_SECONDS", "31536000"))
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Scripts and styles only from /static/ (no inline script, no style attribute, no eval).
CONTENT_SECURITY_POLICY = ("default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TZ", "UTC") if "/" in os.environ.get("TZ", "") else "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = None  # WhiteNoise serves from the app folders (WHITENOISE_USE_FINDERS)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# Celery: Redis when CELERY_BROKER_URL is set, else kombu's filesystem transport
# under the data directory, so a machine with only Python runs workers and beat.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "broker" / "queue"
    _processed_dir = DATA_DIR / "broker" / "processed"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    _processed_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(DATA_DIR / "broker" / "control"),
        "store_processed": False,
        "polling_interval": 0.5,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("PBSWEB_QUEUE", "pbsweb")
# Several worker machines: "store-{store}" sends each datastore's tasks to a queue
# named after it, consumed by the worker on the machine that holds its disk.
DATASTORES_TASK_QUEUE = os.environ.get("PBSWEB_STORE_QUEUE", "")
CELERY_BEAT_SCHEDULE = {
    "scheduler-tick": {"task": "pbsweb.tasks.scheduler_tick", "schedule": 60.0},
}
# The task history is pruned once a day, by age and by count (PBS keeps task logs both ways).
TASK_HISTORY_DAYS = int(os.environ.get("PBSWEB_TASK_HISTORY_DAYS", "90"))
TASK_HISTORY_COUNT = int(os.environ.get("PBSWEB_TASK_HISTORY_COUNT", "50000"))
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# The Fernet key that encrypts secrets at rest (S3 secret keys, passphrases).
PBSWEB_SECRET_KEY_FILE = DATA_DIR / "secret.key"

# Static files are served by WhiteNoise from the app folders (no collectstatic step).
WHITENOISE_USE_FINDERS = True
TLS_CERT_FILE = DATA_DIR / "proxy.pem"
TLS_KEY_FILE = DATA_DIR / "proxy.key"

# A cache shared by web workers (login throttling) without a cache server.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(DATA_DIR / "cache")},
}
LOGIN_FAILURE_LIMIT = 5       # failed logins from one client address within ...
LOGIN_FAILURE_WINDOW = 300    # ... this many seconds lock that address out; as many for one user
LOGIN_FAILURE_MAX_DELAY = 8   # (from any address) slow each further login for it, up to this many seconds

# Mail for notifications (pbsweb.notify): SMTP when EMAIL_HOST is set, else the console backend.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "") == "1"
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", f"pbsweb@{NODE_NAME}")
# The console's address in notification links (default https://<node>:8007).
PBSWEB_BASE_URL = os.environ.get("PBSWEB_BASE_URL", "")
# A remote with no successful sync for longer than this is flagged on the dashboard.
PBSWEB_SYNC_OVERDUE_HOURS = float(os.environ.get("PBSWEB_SYNC_OVERDUE_HOURS", "36"))
