"""Settings: every value comes from the environment (see the README's table).

The defaults give the embedded quick start: SQLite in the project folder, DEBUG off
unless asked for.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment, or set DEBUG=true "
            "for a development run with a throw-away key."
        )
    SECRET_KEY = _DEV_SECRET_KEY
elif not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY is the development key or shorter than 32 characters; production needs "
        "its own long random key, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "eventstore",
    "bank",
    "projections",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After authentication and messages: it logs idle sessions out and says why.
    "config.security.SessionTimeoutMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes' backend first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

if not DEBUG:
    # Serves the admin's static files (after collectstatic) from the app server itself;
    # with DEBUG, runserver serves them from the apps.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "config.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# --- Database -------------------------------------------------------------------------
# The embedded default is an SQLite file in the project folder, built from BASE_DIR so
# that it does not depend on the working directory.
DATABASE_URL = env.str("DATABASE_URL", default="") or (
    f"sqlite:///{(BASE_DIR / 'db.sqlite3').as_posix()}"
)
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# Appends are serialised (see eventstore/appending.py); a stuck appender must not stop every
# writer, so waits for the append lock and idle transactions are bounded on PostgreSQL.
DB_LOCK_TIMEOUT_MS = env.int("DB_LOCK_TIMEOUT_MS", default=5000)
DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = env.int("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", default=60000)

# The event store prepares its few hot statements on PostgreSQL (parsed and planned once
# per connection); turn this off behind a pooler that cannot keep prepared statements
# (PgBouncer before 1.22 in transaction mode: psycopg also sends DEALLOCATE ALL).
EVENTSTORE_PREPARED_STATEMENTS = env.bool("EVENTSTORE_PREPARED_STATEMENTS", default=True)

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    # Django connects with ``prepare_threshold=None``, with which psycopg never prepares,
    # not even ``execute(..., prepare=True)``. With a threshold of 2 the store's statements
    # are prepared on their third run on a connection (a connection kept across requests:
    # CONN_MAX_AGE); one made for a single request never pays for a Parse of its own.
    # Django's own cursors bind on the client and are never prepared.
    DATABASES["default"]["OPTIONS"].setdefault(
        "prepare_threshold", 2 if EVENTSTORE_PREPARED_STATEMENTS else None
    )
    DATABASES["default"]["OPTIONS"]["options"] = (
        f"-c lock_timeout={DB_LOCK_TIMEOUT_MS} "
        f"-c idle_in_transaction_session_timeout={DB_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
    # An unreachable database is reported (503) after this long rather than waited for.
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env.int("DB_CONNECT_TIMEOUT_SECONDS", default=5)
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})
    # IMMEDIATE takes the write lock at BEGIN, so appends are serialised in commit order
    # and "database is locked" becomes a wait (up to the timeout) instead of an error.
    DATABASES["default"]["OPTIONS"].update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests use a file, not SQLite's shared-cache memory database: its table locks ignore
    # the busy timeout, so concurrent writers would fail instead of waiting their turn.
    DATABASES["default"].setdefault("TEST", {})
    DATABASES["default"]["TEST"].setdefault(
        "NAME", env.str("SQLITE_TEST_NAME", default=str(BASE_DIR / "test-db.sqlite3"))
    )

# --- Read replica (config/db_routers.py) --------------------------------- BEGIN replica
# A PostgreSQL streaming replica for the read models' queries (account list, transactions,
# admin lists, the access log). Unset: everything reads the primary, as before. Commands,
# event-sourced reads, projections, the relay and migrations always use the primary.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
# After the replica failed, reads go to the primary for this long before it is tried again.
DATABASE_REPLICA_RETRY_SECONDS = env.float("DATABASE_REPLICA_RETRY_SECONDS", default=5.0)
if DATABASE_REPLICA_URL:
    _replica = env.db_url_config(DATABASE_REPLICA_URL)
    if not all(
        engine == "django.db.backends.postgresql"
        for engine in (DATABASES["default"]["ENGINE"], _replica["ENGINE"])
    ):
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL needs PostgreSQL for both DATABASE_URL and the replica (a "
            "streaming replica of the primary); unset it to read from the primary only."
        )
    _replica["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
    _replica["CONN_HEALTH_CHECKS"] = True
    _replica["OPTIONS"] = {
        **DATABASES["default"]["OPTIONS"],
        # An unreachable replica costs each read at most this long before the primary answers.
        "connect_timeout": env.int("DATABASE_REPLICA_CONNECT_TIMEOUT_SECONDS", default=2),
    }
    # The test runner makes no database of its own for it: it is the primary's copy.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica  # config.db_routers.REPLICA
    DATABASE_ROUTERS = ["config.db_routers.ReplicaRouter"]
    MIDDLEWARE.append("config.db_routers.ReadScopeMiddleware")
# --------------------------------------------------------------------------- END replica

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A link from a trace id in the admin to a trace viewer, e.g.
# "http://jaeger:16686/trace/{trace_id}" (empty: trace ids are shown, not linked).
TRACE_URL_TEMPLATE = env.str("TRACE_URL_TEMPLATE", default="")

# --- Event bus (NATS JetStream) ----------------------------------------------------------
# Without NATS_URL the relay is not configured and does nothing.
NATS_URL = env.str("NATS_URL", default="")
NATS_STREAM = env.str("NATS_STREAM", default="BANK_EVENTS")
NATS_SUBJECT_PREFIX = env.str("NATS_SUBJECT_PREFIX", default="")
NATS_SUBJECTS = env.list("NATS_SUBJECTS", default=[f"{NATS_SUBJECT_PREFIX}bank.>"])
# Re-sent events (after a relay crash) within this window are dropped by JetStream.
NATS_DUPLICATE_WINDOW_SECONDS = env.int("NATS_DUPLICATE_WINDOW_SECONDS", default=3600)
NATS_REPLICAS = env.int("NATS_REPLICAS", default=1)

# --- Domain settings ------------------------------------------------------------------
SNAPSHOT_INTERVAL = env.int("SNAPSHOT_INTERVAL", default=100)
if SNAPSHOT_INTERVAL < 1:
    raise ImproperlyConfigured("SNAPSHOT_INTERVAL must be a positive whole number.")

# --- Event store integrity --------------------------------------------------------------
# The Ed25519 key that seals every append and snapshot (`key_id:base64` of the 32-byte seed,
# or the path of a file holding that text); never stored in the database. Required without
# DEBUG; with DEBUG and none set, a public development key (id "dev") signs.
EVENTSTORE_SIGNING_KEY = env.str("EVENTSTORE_SIGNING_KEY", default="")
# Public keys that verify (`key_id:base64`, comma-separated): keys rotated out, or, for a
# verifier that must not sign, every key. The signing key's public half is always included.
EVENTSTORE_VERIFY_KEYS = env.str("EVENTSTORE_VERIFY_KEYS", default="")
# Without DEBUG, EVENTSTORE_VERIFY_KEYS alone makes a process that verifies and cannot write.
try:
    from eventstore import KeyConfigError, dev_key_text, parse_keyring

    parse_keyring(EVENTSTORE_SIGNING_KEY, EVENTSTORE_VERIFY_KEYS, debug=DEBUG)
except KeyConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
if DEBUG and not EVENTSTORE_SIGNING_KEY:
    EVENTSTORE_SIGNING_KEY = dev_key_text()

# --- Personal data (bank/privacy.py) -----------------------------------------------------
# Master keys that wrap each holder's data key: `key_id:base64` of 32 bytes, comma-separated;
# the first wraps new keys, the others still unwrap (rotation). Required without DEBUG; with
# DEBUG and none set, a public development key (id "dev") is used.
PII_MASTER_KEYS = env.str("PII_MASTER_KEYS", default="")
# How long a process keeps an unwrapped data key in memory: an erasure made by another
# process shows there within this many seconds (at once in the erasing process).
PII_KEY_CACHE_SECONDS = env.int("PII_KEY_CACHE_SECONDS", default=60)
try:
    from bank.privacy import PersonalDataKeyError, parse_master_keys

    parse_master_keys(PII_MASTER_KEYS, debug=DEBUG)
except PersonalDataKeyError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
if DEBUG and not PII_MASTER_KEYS:
    from bank.privacy import dev_master_key_text

    PII_MASTER_KEYS = dev_master_key_text()
if PII_KEY_CACHE_SECONDS < 0:
    raise ImproperlyConfigured("PII_KEY_CACHE_SECONDS must be 0 (no cache) or more.")

# --- API --------------------------------------------------------------------------------
# Bodies larger than this are refused with 400 (DRF >= 3.17.2 applies it to JSON too).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=64 * 1024)
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
# Read your writes: how long a read-model read with min_position waits for the projection to
# reach it before answering 503 projection_lagging (bank/api/consistency.py); 0: never waits.
READ_YOUR_WRITES_TIMEOUT_MS = env.int("READ_YOUR_WRITES_TIMEOUT_MS", default=2000)
if READ_YOUR_WRITES_TIMEOUT_MS < 0:
    raise ImproperlyConfigured(
        "READ_YOUR_WRITES_TIMEOUT_MS must be 0 (answer at once) or a positive number of "
        "milliseconds."
    )
# Maker-checker (bank/services/policy.py): commands that wait for a second person's
# approval. A withdrawal, transfer or reversal of at least the threshold (minor units; per
# currency in APPROVAL_THRESHOLDS, e.g. "EUR=1000000,JPY=100000", over the one amount of
# APPROVAL_THRESHOLD_CENTS for every currency; neither set: no amount needs approval); the
# kinds in APPROVAL_ALWAYS always ("freeze,close" by default; "" for none). A request
# expires after APPROVAL_TTL_HOURS.
APPROVAL_THRESHOLD_CENTS = env.int("APPROVAL_THRESHOLD_CENTS", default=None)
APPROVAL_THRESHOLDS = env.str("APPROVAL_THRESHOLDS", default="")
APPROVAL_ALWAYS = env.str("APPROVAL_ALWAYS", default="freeze,close")
APPROVAL_TTL_HOURS = env.int("APPROVAL_TTL_HOURS", default=72)
try:
    from bank.services.policy import ApprovalPolicy as _ApprovalPolicy

    _ApprovalPolicy.parse(
        threshold_cents=APPROVAL_THRESHOLD_CENTS,
        thresholds=APPROVAL_THRESHOLDS,
        always=APPROVAL_ALWAYS,
        ttl_hours=APPROVAL_TTL_HOURS,
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"maker-checker settings: {exc}") from exc

# The OpenAPI document and the docs page: public by default (they describe, not reveal).
API_DOCS_PUBLIC = env.bool("API_DOCS_PUBLIC", default=True)

REST_FRAMEWORK = {
    # Token first: the first class decides the 401 challenge, so anonymous requests get 401
    # with WWW-Authenticate: Token. The same DRF tokens are also read as "Bearer <key>", the
    # word a generated client sends by default.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "bank.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["bank.api.permissions.BankRolePermission"],
    "DEFAULT_PARSER_CLASSES": ["bank.api.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "bank.api.problems.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env.str("API_THROTTLE_RATE", default="1200/minute")},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Ledgerline API",
    "DESCRIPTION": (
        "Commands and queries on event-sourced bank accounts. Errors are "
        "application/problem+json (RFC 9457) with a stable `code`."
    ),
    "VERSION": "1.0.0",
    # Not published under an open licence; there is no licence text at a URL to link to.
    "LICENSE": {"name": "Proprietary"},
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "bank.api.schema.forbid_unknown_request_fields",
        "bank.api.schema.describe_request_bodies",
        "bank.api.schema.blank_text_is_one_schema",
        "bank.api.schema.declare_tags",
    ],
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- HTTPS and browser security (on unless DEBUG) -----------------------------------------
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto, set BEHIND_TLS_PROXY=true so
# that Django knows which requests were HTTPS. /healthz is exempt from the HTTPS redirect
# so that a load balancer can probe it over plain HTTP.
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Content-Security-Policy (django-csp) on every answer: only this origin's own files, no
# inline script or style, no plugins, no framing, forms post only here. A page that needs
# more says so where it is served (config/urls.py: the API docs' one inline style, by hash).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# --- Logins and sessions ---------------------------------------------------------------------
# The address a login is counted by (config/security.client_ip): REMOTE_ADDR, or, behind this
# many reverse proxies that each append to X-Forwarded-For, the address the outermost one saw.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(
        "TRUSTED_PROXY_COUNT must be 0 (no proxy: REMOTE_ADDR) or the number of proxies in front."
    )
# django-axes: after LOGIN_FAILURE_LIMIT failed logins for one user from one address, that user
# cannot log in from that address for LOGIN_COOLOFF_MINUTES (other users there, and the user
# elsewhere, still can). Attempts and lockouts are in the admin; `axes_reset*` commands unlock.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOLOFF_MINUTES = env.int("LOGIN_COOLOFF_MINUTES", default=15)
if LOGIN_FAILURE_LIMIT < 1 or LOGIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured(
        "LOGIN_FAILURE_LIMIT and LOGIN_COOLOFF_MINUTES must be positive whole numbers."
    )
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A lockout lasts what the page says: attempts during it are refused without extending it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Every failure kept with its time, address and user agent (at most 1,000 per user), beside
# axes' per user-and-address counter: what an investigation of an attack needs.
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
AXES_LOCKOUT_CALLABLE = "config.security.lockout_response"

# A session ends SESSION_COOKIE_AGE_HOURS after its login, or after SESSION_IDLE_TIMEOUT_MINUTES
# without a request (0: no idle limit), whichever comes first (config/security.py).
SESSION_COOKIE_AGE = int(env.float("SESSION_COOKIE_AGE_HOURS", default=8.0) * 3600)
SESSION_IDLE_TIMEOUT_MINUTES = env.int("SESSION_IDLE_TIMEOUT_MINUTES", default=30)
if SESSION_COOKIE_AGE < 60 or SESSION_IDLE_TIMEOUT_MINUTES < 0:
    raise ImproperlyConfigured(
        "SESSION_COOKIE_AGE_HOURS must be at least one minute (e.g. 0.5) and "
        "SESSION_IDLE_TIMEOUT_MINUTES zero (no idle limit) or more."
    )
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", default=False)

# --- Health ------------------------------------------------------------------------------
# /healthz and `manage.py healthcheck` fail when a projection lags more than this.
HEALTH_MAX_LAG_EVENTS = env.int("HEALTH_MAX_LAG_EVENTS", default=10_000)
HEALTH_MAX_LAG_SECONDS = env.float("HEALTH_MAX_LAG_SECONDS", default=300.0)
# ... and when no full `verify_events --full` succeeded within this many hours (run it daily).
HEALTH_MAX_VERIFY_AGE_HOURS = env.float("HEALTH_MAX_VERIFY_AGE_HOURS", default=26.0)

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"trace": {"()": "config.telemetry.TraceIdFilter"}},
    "formatters": {
        "traced": {
            "format": "%(asctime)s %(levelname)s %(name)s trace_id=%(trace_id)s "
            "span_id=%(span_id)s %(message)s"
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["trace"], "formatter": "traced"}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Django's own defaults give "django" and "django.server" handlers of their own; with the
    # root's, every line of runserver was printed twice. One handler, the root's.
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
