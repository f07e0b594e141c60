"""Forward destinations: where a merchant's forwards may go, and the credentials they may fill in.

A destination's URL is an origin with an optional path prefix; a forward goes under it and nowhere else. It follows
the outbound rules of webhooks (``core.outbound``): public addresses only, checked here when the destination is
saved and again by the outbound client at connect time. It must be https: a forward carries a card. Plain http is
let through only to loopback where loopback is allowed (``WEBHOOK_ALLOW_LOOPBACK``, for development and tests).

Credentials (name → secret: the provider's API key, say) are encrypted together under the vault's key ring, bound
to the destination and its merchant, and never shown again: answers and the admin show their names
(``destination_credential_names``), a forward reads them with ``destination_credentials``.
"""

import ipaddress
import json
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.audit import Actor, audit_record
from core.errors import NotFound
from core.outbound import UnsafeUrl, vetted_addresses
from merchants.models import Merchant
from vault.keys import key_ring
from vault.models import ForwardDestination

UNSET = object()


def destination_list(*, merchant: Merchant) -> QuerySet[ForwardDestination]:
    return ForwardDestination.objects.filter(merchant=merchant)


def destination_get(*, merchant: Merchant, public_id: str) -> ForwardDestination:
    """The merchant's destination; another merchant's or an unknown one is NotFound alike. Disabled ones too: the
    merchant sees and manages them (a forward refuses them)."""
    destination = destination_list(merchant=merchant).filter(public_id=public_id).first()
    if destination is None:
        raise NotFound("The forward destination does not exist")
    return destination


def destination_url_vet(url: str) -> None:
    """Raise UnsafeUrl (its message safe to show) unless ``url`` may be a destination: https (http to loopback
    where loopback is allowed), no query, fragment or dot segments, and every address its host resolves to allowed
    for outbound calls (``core.outbound.vetted_addresses``)."""
    addresses = vetted_addresses(url)
    parts = urlsplit(url)
    if parts.scheme != "https" and not (
        settings.WEBHOOK_ALLOW_LOOPBACK
        and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)
    ):
        raise UnsafeUrl("The URL must be https://")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise UnsafeUrl("The URL must be an origin with an optional path prefix: no query or fragment")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise UnsafeUrl("The URL's path must not hold . or .. segments")


def destination_credentials(destination: ForwardDestination) -> dict[str, str]:
    """The destination's credentials in clear (name → secret), for a forward to fill in. Raises what the key ring
    raises (KeysUnavailable while the keys do not match the data, DecryptionFailed for a ciphertext moved from
    another row)."""
    plain = key_ring().decrypt(
        destination.key_version,
        bytes(destination.credentials_ciphertext),
        associated_data=destination.associated_data(),
    )
    return json.loads(plain)


def destination_credential_names(destination: ForwardDestination) -> list[str]:
    """The names of the destination's credentials, sorted: all that answers and the admin show of them."""
    return sorted(destination_credentials(destination))


def _credentials_set(destination: ForwardDestination, credentials: dict[str, str]) -> None:
    """Encrypt ``credentials`` into the row (saved with it)."""
    destination.key_version, destination.credentials_ciphertext = key_ring().encrypt(
        json.dumps(credentials), associated_data=destination.associated_data()
    )


@transaction.atomic
def destination_create(
    *,
    merchant: Merchant,
    name: str,
    url: str,
    description: str = "",
    credentials: dict[str, str] | None = None,
    actor: Actor,
) -> ForwardDestination:
    """Register a destination for ``merchant`` after vetting its URL (``destination_url_vet``: UnsafeUrl, nothing
    written); its credentials are encrypted. Audited (how many credentials, nothing of them)."""
    destination_url_vet(url)
    destination = ForwardDestination(merchant=merchant, name=name, url=url, description=description)
    _credentials_set(destination, credentials or {})
    destination.save()
    audit_record(
        actor=actor,
        action="forward_destination.create",
        obj=destination,
        detail={"url": url, "credentials": len(credentials or {})},
    )
    return destination


@transaction.atomic
def destination_update(
    *, destination: ForwardDestination, actor: Actor, name=UNSET, url=UNSET, description=UNSET, credentials=UNSET
) -> ForwardDestination:
    """Change the given fields. A new URL is vetted (UnsafeUrl, nothing written); new ``credentials`` replace
    every stored one. Audited with the values changed (of the credentials, how many there are now)."""
    changed = {}
    if url is not UNSET:
        destination_url_vet(url)
        destination.url = changed["url"] = url
    if name is not UNSET:
        destination.name = name
        changed["name"] = name
    if description is not UNSET:
        destination.description = description
        changed["description"] = description
    fields = list(changed)
    if credentials is not UNSET:
        _credentials_set(destination, credentials)
        changed["credentials"] = len(credentials)
        fields += ["credentials_ciphertext", "key_version"]
    destination.updated_at = timezone.now()
    destination.save(update_fields=[*fields, "updated_at"])
    audit_record(actor=actor, action="forward_destination.update", obj=destination, detail={"changed": changed})
    return destination


@transaction.atomic
def destination_delete(*, destination: ForwardDestination, actor: Actor) -> None:
    """Remove the destination and its credentials; the forwards made to it stay in the log. Audited."""
    audit_record(actor=actor, action="forward_destination.delete", obj=destination)
    destination.delete()


@transaction.atomic
def destination_disable(*, destination: ForwardDestination, reason: str, actor: Actor) -> bool:
    """Stop forwards to ``destination`` (staff's call: the merchant sees it disabled with ``reason`` and cannot
    enable it again). Returns False, writing nothing, when it is disabled already. Audited."""
    now = timezone.now()
    changed = ForwardDestination.objects.filter(pk=destination.pk, is_enabled=True).update(
        is_enabled=False, disabled_reason=reason[:255], disabled_at=now, updated_at=now
    )
    if changed:
        destination.refresh_from_db()
        audit_record(actor=actor, action="forward_destination.disable", obj=destination, detail={"reason": reason})
    return bool(changed)


@transaction.atomic
def destination_enable(*, destination: ForwardDestination, actor: Actor) -> bool:
    """Let forwards go to ``destination`` again; False, writing nothing, when it is enabled already. Audited."""
    changed = ForwardDestination.objects.filter(pk=destination.pk, is_enabled=False).update(
        is_enabled=True, disabled_reason="", disabled_at=None, updated_at=timezone.now()
    )
    if changed:
        destination.refresh_from_db()
        audit_record(actor=actor, action="forward_destination.enable", obj=destination)
    return bool(changed)
