import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

application = get_wsgi_application()

# A server whose KEK provider cannot serve (a wrong HSM PIN, a missing module, token or key; a malformed VAULT_KEK)
# stops here, with the one line saying what to do, rather than answering 503 to every card (vault/apps.py).
from vault.kek import kek_provider  # noqa: E402 - once Django is set up

kek_provider().verify()
