"""Settings of the small Django project whose migrations build a template for
pgrx-tests/tests/fidelity.rs. The test gives the database through TC_DJANGO_*;
every table goes into the template schema (search_path)."""
import os

SECRET_KEY = "fidelity-test-only"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "library",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["TC_DJANGO_HOST"],
        "PORT": os.environ["TC_DJANGO_PORT"],
        "NAME": os.environ["TC_DJANGO_DB"],
        "USER": "postgres",
        "OPTIONS": {"options": "-c search_path=tenant_template"},
    }
}
# What the admin application asks of a project.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.request",
            ]
        },
    }
]
