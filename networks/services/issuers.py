"""Issuers: the registry by BIN range that every provisioning asks (``issuer_for``), and the staff's edits of it."""

from django.db import transaction

from core.audit import Actor, audit_record
from networks.models import Issuer

# What staff set on an issuer; the rest (``registered``, the scheduler's clock) is the product's.
ISSUER_FIELDS = ("name", "network", "bin_low", "bin_high", "card_art_ids", "rate_limit_per_second")


def issuer_for(card_number: str, network: str) -> Issuer:
    """The registered issuer whose BIN range holds the card (the innermost); for a BIN outside the registry, the
    issuer of that one BIN, made on first use with the default rate limit, so that a bank the registry does not
    list yet is spaced and scheduled on its own rather than with every other unlisted bank of its network."""
    bin_ = card_number[:6]
    issuer = (
        Issuer.objects.filter(network=network, registered=True, bin_low__lte=bin_, bin_high__gte=bin_)
        .order_by("-bin_low", "bin_high")
        .first()  # the innermost range holding the BIN was registered for it
    )
    if issuer is None:
        # get_or_create: two workers meeting the BIN at once end in the one row the unique constraint allows.
        issuer, _ = Issuer.objects.get_or_create(
            network=network,
            registered=False,
            bin_low=bin_,
            bin_high=bin_,
            defaults={"name": f"Unregistered {network} issuer, BIN {bin_}"},
        )
    return issuer


@transaction.atomic
def issuer_create(*, issuer: Issuer, actor: Actor) -> Issuer:
    """Register ``issuer``, a new row not saved yet (as a form builds it); audited as ``admin.issuer.create`` with
    each of its ``ISSUER_FIELDS``. The database refuses a range that ends before it starts or a rate below 1."""
    issuer.registered = True
    issuer.save(force_insert=True)
    audit_record(
        actor=actor,
        action="admin.issuer.create",
        obj=issuer,
        detail={name: getattr(issuer, name) for name in ISSUER_FIELDS},
    )
    return issuer


@transaction.atomic
def issuer_update(*, issuer: Issuer, changes: dict, actor: Actor) -> Issuer:
    """Set ``changes`` (some of ``ISSUER_FIELDS`` → their new values) on ``issuer`` and save those fields only: the
    scheduler keeps moving ``next_call_at`` on this row meanwhile. Audited as ``admin.issuer.change`` with the
    changes; no changes, nothing written. Raises ValueError for a field staff do not set."""
    if not changes:
        return issuer
    if unknown := set(changes) - set(ISSUER_FIELDS):
        raise ValueError(f"not an issuer field staff set: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(issuer, name, value)
    issuer.save(update_fields=list(changes))
    audit_record(actor=actor, action="admin.issuer.change", obj=issuer, detail=dict(changes))
    return issuer
