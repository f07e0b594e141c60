"""The audit log's one writer: who acted (``Actor``) and ``audit_record``. Services of every app call it."""

from dataclasses import dataclass

from core.models import AuditLog
from core.request_id import current_request_id


@dataclass(frozen=True)
class Actor:
    """Who is acting, for the audit log: a merchant's API key, a staff user, or the system."""

    label: str
    merchant: object | None = None  # a merchants.models.Merchant
    origin: str = ""


SYSTEM = Actor("system")


def audit_record(
    *,
    actor: Actor,
    action: str,
    result: str = AuditLog.SUCCESS,
    obj=None,
    object_type: str = "",
    object_id: str = "",
    detail: dict | None = None,
) -> AuditLog:
    """Append one audit row, with the id of the request being served (core.request_id) if any. ``obj`` names the
    object by its ``audit_type`` and ``audit_id``. Never pass card data in ``detail``."""
    if obj is not None:
        object_type, object_id = obj.audit_type, obj.audit_id
    return AuditLog.objects.create(
        actor=actor.label[:120],
        merchant=actor.merchant,
        action=action,
        object_type=object_type,
        object_id=object_id,
        result=result,
        origin=actor.origin[:64],
        detail=detail or {},
        request_id=current_request_id() or "",
    )
