"""``manage.py kek_create``: the key encryption key, made where it will live.

With the ``pkcs11`` provider, the KEK is generated inside the HSM (``Pkcs11Provider.create_kek``: AES-256, a token
object, sensitive, non-extractable, for wrapping keys only) under ``--label`` (default ``PKCS11_KEY_LABEL``) when the
token holds no key of that label; nothing of it is ever printed, there is nothing to print.

With the ``local`` provider the KEK is a setting, which this command cannot write: it says how to make one, and with
``--components N`` it is the ceremony's generator, printing N random components (base64, 32 bytes each) whose XOR is
the KEK, one for each custodian, and the KEK's id. For split knowledge in earnest, each custodian runs
``kek_create --components 1`` on a screen of their own and enters their component themselves
(``VAULT_KEK_COMPONENTS``, comma-separated), so nobody ever sees them all.
"""

import base64
import functools
import operator
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from vault.crypto import check_value
from vault.kek import KekUnavailable, kek_provider
from vault.kek.local import KEY_BYTES, kek_id_of


class Command(BaseCommand):
    # The system checks include the KEK provider's (vault.apps), which refuses a KEK missing from the HSM: the very
    # thing this command makes.
    requires_system_checks = []
    help = (
        "Generate the key encryption key (KEK). VAULT_KEK_PROVIDER=pkcs11: inside the HSM, under --label (default "
        "PKCS11_KEY_LABEL), non-extractable, when the token holds no key of that label. VAULT_KEK_PROVIDER=local: "
        "print how to set VAULT_KEK, or with --components N print N components for N custodians "
        "(VAULT_KEK_COMPONENTS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--label", help="pkcs11: the KEK's label in the HSM (default PKCS11_KEY_LABEL)")
        parser.add_argument(
            "--components",
            type=int,
            metavar="N",
            help="local: print N random components of a new KEK, one for each custodian (1: this custodian's own)",
        )

    def handle(self, *args, label: str | None, components: int | None, **options):
        if components is not None:
            if settings.VAULT_KEK_PROVIDER == "pkcs11":
                raise CommandError("--components makes a local KEK; the pkcs11 provider's KEK is made in the HSM")
            self._components(components)
            return
        provider = kek_provider()
        if provider.name == "local" and not label:
            self._local_help()
            return
        if provider.name != "pkcs11":
            raise CommandError(f"VAULT_KEK_PROVIDER={settings.VAULT_KEK_PROVIDER}: its KEK is not made by this command")
        label = label or provider.key_label
        try:
            made = provider.create_kek(label)
        except KekUnavailable as exc:
            raise CommandError(str(exc)) from None
        where = f"on token {provider.token_label!r} ({provider.module})"
        if made:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Generated the KEK {label!r} {where}: AES-256, made in the HSM, non-extractable, for wrapping keys"
                )
            )
        else:
            self.stdout.write(f"The KEK {label!r} is already {where}: nothing to do")
        if label != provider.key_label:
            self.stdout.write(
                f"To move every key to it: set PKCS11_KEY_LABEL={label} (keeping the key {provider.key_label!r} in "
                f"the HSM), restart, run `manage.py rotate_kek`; then the old key may be destroyed in the HSM."
            )

    def _components(self, count: int) -> None:
        if count < 1:
            raise CommandError("--components takes 1 or more")
        parts = [os.urandom(KEY_BYTES) for _ in range(count)]
        self.stdout.write(
            "Each component below is for one custodian only: they keep it where nobody else sees it, and enter it "
            "themselves. A component's check value lets its custodian tell it was entered right, and tells nothing "
            "of it."
        )
        for n, part in enumerate(parts, 1):
            self.stdout.write(
                f"component {n} of {count}: {base64.b64encode(part).decode()}  (check value {check_value(part)})"
            )
        if count == 1:
            self.stdout.write("With the other custodians' components: VAULT_KEK_COMPONENTS=<yours>,<theirs>,...")
            return
        kek = functools.reduce(lambda a, b: bytes(map(operator.xor, a, b)), parts)
        self.stdout.write(
            f"VAULT_KEK_COMPONENTS=<component 1>,...,<component {count}> makes the KEK {kek_id_of(kek)}; to move to "
            f"it from the current one, put the current KEK in VAULT_KEK_PREVIOUS, restart, run `manage.py rotate_kek`."
        )

    def _local_help(self) -> None:
        self.stdout.write(
            "VAULT_KEK_PROVIDER=local keeps the KEK in the environment: VAULT_KEK (base64 of 32 random bytes), or, "
            "for split knowledge, VAULT_KEK_COMPONENTS (two or more components, one for each custodian, XORed): "
            "`manage.py kek_create --components 3` prints three. With VAULT_KEK_PROVIDER=pkcs11 (an HSM: "
            "PKCS11_MODULE, PKCS11_TOKEN_LABEL, PKCS11_PIN, PKCS11_KEY_LABEL) this command makes the KEK in the HSM."
        )
