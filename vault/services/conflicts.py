"""A token's pending conflict (the values a tokenize request sent that differed from the stored ones, kept by
``card_tokenize``): applied to the token, or dismissed.

Each service is keyword-only, runs in one transaction, and says in its docstring what it writes and raises.
"""

from django.db import transaction

from core.audit import SYSTEM, Actor, audit_record
from core.errors import ResourceNotFound
from core.models import AuditLog
from vault.models import Token, TokenConflict
from vault.services.tokenize import token_update


def conflict_apply(*, token: Token, actor: Actor = SYSTEM) -> Token:
    """Apply the pending conflict's values to ``token`` and drop the conflict: writes what ``token_update`` writes
    (the merchant's ``token.updated`` event) and an ``token.conflict_apply`` audit row for ``actor``.

    Raises ResourceNotFound when no conflict is pending (none, or expired: ``TokenConflict.is_pending``); nothing is
    changed then but a failure row in the audit log.
    """
    try:
        with transaction.atomic():
            conflict = TokenConflict.objects.select_for_update().filter(token=token).first()
            if conflict is None or not conflict.is_pending():
                raise ResourceNotFound("The token has no pending conflict")
            changes = {}
            if conflict.card_holder_name is not None:
                changes["card_holder_name"] = conflict.card_holder_name
            if conflict.expiry_month is not None:
                changes["expiry"] = (conflict.expiry_month, conflict.expiry_year)
            if conflict.billing_address is not None:
                changes["billing_address"] = conflict.billing_address
            if conflict.scheme_transaction_reference is not None:
                changes["scheme_transaction_reference"] = conflict.scheme_transaction_reference
            conflict.delete()
            token = token_update(token=token, **changes)
            audit_record(actor=actor, action="token.conflict_apply", obj=token)
    except ResourceNotFound:
        audit_record(
            actor=actor,
            action="token.conflict_apply",
            obj=token,
            result=AuditLog.FAILURE,
            detail={"reason": "no pending conflict"},
        )
        raise
    return token


def conflict_dismiss(*, token: Token, actor: Actor = SYSTEM) -> None:
    """Forget the conflict of ``token``, pending or expired, keeping the stored data (the merchant is not told);
    writes an ``token.conflict_dismiss`` audit row for ``actor``.

    Raises ResourceNotFound when the token has no conflict (applied or dismissed meanwhile); nothing is changed then
    but a failure row in the audit log.
    """
    with transaction.atomic():
        dismissed, _ = TokenConflict.objects.filter(token=token).delete()
        if dismissed:
            audit_record(actor=actor, action="token.conflict_dismiss", obj=token)
            return
    audit_record(
        actor=actor,
        action="token.conflict_dismiss",
        obj=token,
        result=AuditLog.FAILURE,
        detail={"reason": "no conflict"},
    )
    raise ResourceNotFound("The token has no conflict")
