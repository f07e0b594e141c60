"""Key encryption keys (KEKs): what wraps the vault's data encryption keys (DEKs) and its fingerprint key.

A DEK is stored only wrapped by a KEK and unwrapped into process memory on use (``vault.keys``); the KEK itself
lives with a *provider*, chosen by ``VAULT_KEK_PROVIDER``:

- ``local`` (``vault.kek.local``): the KEK from ``VAULT_KEK``, or XORed together from ``VAULT_KEK_COMPONENTS``
  (split knowledge: each component held by a different person);
- ``pkcs11`` (``vault.kek.pkcs11``): a KEK generated inside an HSM as non-extractable; wrapping and unwrapping
  happen in the HSM;
- or the dotted path of a class keeping the contract below (another key manager), made without arguments.

Every provider keeps the small contract of ``KekProvider`` below. A KEK is named by a ``kek_id`` that is stored
beside each wrapped key, so a key wrapped under an older KEK is found again (``rotate_kek`` re-wraps such keys
under the current one); a ``kek_id`` says which key, never anything of its material.
"""

import functools
from typing import Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


class KekUnavailable(Exception):
    """The provider cannot wrap or unwrap now (an HSM unreachable, a session lost, a KEK this process lacks): card
    work needing a key not yet in memory answers 503 until it comes back. Says which KEK, never key material."""


class KekProvider(Protocol):
    name: str  # "local" | "pkcs11"

    def current_kek_id(self) -> str:
        """The id of the KEK that new wraps go under (e.g. ``local:<check value>``, ``pkcs11:<key label>``)."""

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        """``key`` (32 bytes) wrapped under the current KEK: ``(kek_id, wrapped)``. Raises KekUnavailable."""

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        """The key ``wrapped`` under the KEK ``kek_id``. Raises KekUnavailable when that KEK is out of reach (or
        not held here), ValueError when ``wrapped`` does not authenticate under it."""

    def describe(self) -> str:
        """One line for operators and the admin: provider, where the KEK lives, its id; never key material."""

    def verify(self) -> None:
        """The start-up check (``vault.apps``): raises ImproperlyConfigured, one line saying what is wrong and what to
        do (a wrong PIN, a missing module, token or key, a malformed key), when this provider cannot serve."""


# Every setting a provider is made from: a change to any of them (tests; a process never changes its settings) makes
# the next ``kek_provider()`` a new one.
KEK_SETTINGS = frozenset(
    {
        "VAULT_KEK_PROVIDER",
        "VAULT_KEK",
        "VAULT_KEK_COMPONENTS",
        "VAULT_KEK_PREVIOUS",
        "PKCS11_MODULE",
        "PKCS11_TOKEN_LABEL",
        "PKCS11_PIN",
        "PKCS11_KEY_LABEL",
    }
)


@functools.cache
def kek_provider() -> KekProvider:
    """This process's provider, as ``VAULT_KEK_PROVIDER`` chooses it, made once. The ``pkcs11`` module is imported
    only when chosen: a process on the ``local`` provider needs no PKCS#11 library. Raises ImproperlyConfigured for
    settings that cannot make one (naming them, never their values)."""
    from django.conf import settings

    if settings.VAULT_KEK_PROVIDER == "local":
        from vault.kek.local import LocalProvider

        return LocalProvider.from_settings()
    if settings.VAULT_KEK_PROVIDER == "pkcs11":
        from vault.kek.pkcs11 import Pkcs11Provider

        return Pkcs11Provider(
            module=settings.PKCS11_MODULE,
            token_label=settings.PKCS11_TOKEN_LABEL,
            pin=settings.PKCS11_PIN,
            key_label=settings.PKCS11_KEY_LABEL,
        )
    if "." in settings.VAULT_KEK_PROVIDER:
        # Another key manager: the dotted path of a class of this contract, made without arguments (it reads its
        # own settings), as the networks' real token services are named in TSP_PROVIDERS.
        return import_string(settings.VAULT_KEK_PROVIDER)()
    raise ImproperlyConfigured(
        f"VAULT_KEK_PROVIDER must be 'local', 'pkcs11' or the dotted path of a provider class, not "
        f"{settings.VAULT_KEK_PROVIDER!r}"
    )


def reset_kek_provider(*, setting, **kwargs):
    if setting in KEK_SETTINGS:
        kek_provider.cache_clear()
