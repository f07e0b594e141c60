"""Reads of the audit log for the pages that show it. Core knows none of the apps: an object is named as the audit log
names it, by its ``audit_type`` and its audit id (a tokenId, a key's prefix, a public id)."""

from django.db.models import Q, QuerySet

from core.models import AuditLog


def audit_rows_about(*, objects: dict[str, list[str]]) -> QuerySet[AuditLog]:
    """The audit rows about ``objects`` (an ``object_type`` → the ids of its objects), the newest first, with their
    merchants; none when ``objects`` names nothing.

    Every object is an equality on ``object_id``, which its index answers whatever the size of the log (the type is
    checked on the few rows it finds).
    """
    about = Q(pk__in=[])
    for object_type, object_ids in objects.items():
        if object_ids:
            about |= Q(object_type=object_type, object_id__in=object_ids)
    return AuditLog.objects.filter(about).select_related("merchant").order_by("-created_at", "-pk")
