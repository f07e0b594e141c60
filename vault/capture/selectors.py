"""Reads of capture sessions: by id alone for the browser's calls (the client secret decides), by merchant for the
merchant's API."""

from django.db.models import QuerySet

from core.errors import NotFound
from merchants.models import Merchant
from vault.models import CaptureSession


def capture_session_list(*, merchant: Merchant) -> QuerySet[CaptureSession]:
    return CaptureSession.objects.filter(merchant=merchant)


def capture_session_get(*, public_id: str) -> CaptureSession | None:
    """The session ``public_id`` names, whoever's it is (with its merchant), or None."""
    return CaptureSession.objects.select_related("merchant").filter(public_id=public_id).first()


def capture_session_of(*, merchant: Merchant, public_id: str) -> CaptureSession:
    """The merchant's session, with its token; another merchant's or an unknown one is NotFound alike."""
    session = capture_session_list(merchant=merchant).select_related("token").filter(public_id=public_id).first()
    if session is None:
        raise NotFound("The capture session does not exist")
    return session
