"""The admin login, protected against brute force.

Failed logins are counted where they are recorded anyway: the audit log's ``admin.login.failed`` rows. Every server
therefore sees the same counts without a cache to run, and the evidence of an attack is the lock itself.

- **Per username**: ``MAX_FAILURES_PER_USERNAME`` failures within ``WINDOW`` lock it. While the window still holds
  that many failures, a login for it is refused with 429 before its password is looked at, from any address. A
  successful login of that username starts its count afresh: only someone who knows the password can do that.
- **Per client address**: ``MAX_FAILURES_PER_ADDRESS`` failures within ``WINDOW``, whatever the usernames, lock
  the address (password spraying). A successful login never clears an address's count, or an attacker holding
  one low-privileged account could log into it between guesses and guess on forever.

Refusals are audited (``admin.login.locked``) but are not failures, so hammering a locked account does not
lengthen its lock: guesses are held to the limit per window whatever the attacker does. Usernames are counted
case-insensitively, so ``Admin`` and ``admin`` share a count.

The price of locking by username is that anyone can keep an account locked by failing on purpose; staff then log
in once the window has passed or from an account not under attack. The client address is ``REMOTE_ADDR``, as
everywhere in the audit log: behind a proxy, that is the proxy's, and the per-address limit becomes a site-wide one.
"""

from datetime import datetime, timedelta

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.decorators import login_not_required
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from core.audit import Actor, audit_record
from core.models import AuditLog
from merchants.authentication import client_origin

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_ADDRESS = 20
FAILED, LOCKED, SUCCEEDED = "admin.login.failed", "admin.login.locked", "admin.login"


@never_cache
@login_not_required
def login(request, extra_context=None):
    """``admin.site.login``, refusing usernames and addresses that failed too often, and auditing every attempt."""
    if request.method != "POST":
        return admin.site.login(request, extra_context)
    username = request.POST.get("username", "")
    user_key = _user_key(username)
    origin = client_origin(request)
    detail = {"username": username[:150]}
    until = locked_until(user_key=user_key, origin=origin)
    if until is not None:
        audit_record(
            actor=Actor("anonymous", origin=origin),
            action=LOCKED,
            result=AuditLog.FAILURE,
            object_type="user",
            object_id=user_key,
            detail=detail,
        )
        return _locked_page(request, username=username, until=until)

    response = admin.site.login(request, extra_context)
    if response.status_code == 302:  # the form was valid: LoginView logged the user in and redirects
        audit_record(
            actor=Actor(f"admin:{request.user.get_username()}", origin=origin),
            action=SUCCEEDED,
            object_type="user",
            object_id=user_key,
            detail=detail,
        )
    elif username and request.POST.get("password"):  # credentials were checked and refused
        audit_record(
            actor=Actor("anonymous", origin=origin),
            action=FAILED,
            result=AuditLog.FAILURE,
            object_type="user",
            object_id=user_key,
            detail=detail,
        )
    return response


def locked_until(*, user_key: str, origin: str, now: datetime | None = None) -> datetime | None:
    """When the lock on this username or address ends, or None when neither is locked."""
    now = now or timezone.now()
    since = now - WINDOW
    last_success = (
        AuditLog.objects.filter(action=SUCCEEDED, object_id=user_key, created_at__gt=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    ends = [
        _lock_end(
            AuditLog.objects.filter(action=FAILED, object_id=user_key, created_at__gt=last_success or since),
            MAX_FAILURES_PER_USERNAME,
        ),
        _lock_end(AuditLog.objects.filter(action=FAILED, origin=origin, created_at__gt=since), MAX_FAILURES_PER_ADDRESS)
        if origin
        else None,
    ]
    ends = [end for end in ends if end is not None and end > now]
    return max(ends) if ends else None


def _lock_end(failures, limit: int) -> datetime | None:
    # Locked while the window holds ``limit`` failures: until the oldest of the latest ``limit`` leaves it.
    latest = list(failures.order_by("-created_at").values_list("created_at", flat=True)[:limit])
    return latest[-1] + WINDOW if len(latest) == limit else None


def _user_key(username: str) -> str:
    return username.strip().casefold()[:64]


def _locked_page(request, *, username: str, until: datetime) -> TemplateResponse:
    """The login page with the reason it refuses, answered 429 with ``Retry-After``."""
    seconds = max(1, int((until - timezone.now()).total_seconds()) + 1)
    form = AdminAuthenticationForm(request, initial={"username": username})
    form.cleaned_data = {}  # an unbound form has none; add_error needs it to show a non-field error
    form.add_error(
        None,
        f"Too many failed logins for this account or from this address. Try again in {-(-seconds // 60)} minute(s).",
    )
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "subtitle": None,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
        "form": form,
        "next": request.POST.get("next") or reverse("admin:index"),
    }
    request.current_app = admin.site.name
    response = TemplateResponse(request, admin.site.login_template or "admin/login.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response
