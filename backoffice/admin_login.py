"""Staff sign-in to the admin: a password, then a code from an authenticator app (TOTP), with brute force held off.

**Two steps.** ``login`` (/admin/login/) checks the username and password. A right password signs no one in: the
session notes who passed it (``PENDING``, for ``STEP_TIME``) and the browser goes on to ``code`` (/admin/login/code/),
which asks for the code of the staff member's TOTP device (django-otp). A right code signs them in: Django's login,
then django-otp's, so the session is verified and the admin site (backoffice.admin_site) lets it in. No session is
ever signed in on the password alone.

**Enrolment.** A staff member without a confirmed device (a new account; ``make run``'s ``admin`` on its first
login) goes from the password to ``enrol`` (/admin/login/enrol/): a new key for their authenticator app, shown as a
QR code (inline SVG, drawn here: nothing leaves the machine) and as text; the first code it makes confirms it and
signs them in. The key is shown once: showing the page again makes a new key, a wrong code answers without it, and a
confirmed device is never shown again (django-otp's admin hides keys, ``OTP_ADMIN_HIDE_SENSITIVE_DATA``).

**Brute force.** Every guess, at a password or at a code, is written down (``SignInAttempt``) before it is checked,
while its username's and its address's ``SignInGuard`` rows are locked: guesses sent in parallel take their turn
there, and each counts those before it, whether they are still being checked or not. So no more guesses than the
limit are ever checked (hashed, or compared with a code), however many arrive at once. (django-axes was weighed
and not taken: it checks its lock before authenticating and records the failure after, the same race, and knows
nothing of codes.)

- **Per username**: ``MAX_FAILURES_PER_USERNAME`` failed guesses within ``WINDOW`` lock it for ``LOCKOUT``, counted
  from the guess that reached the limit (PCI DSS 8.3.4 asks for 30 minutes at least). Meanwhile a guess for it is
  refused with 429 before anything is checked, from any address. Wrong codes count as wrong passwords do. Signing
  in (password and code) starts its count afresh: only someone who holds the password and the device can do that.
  A right password alone does not, or the password would buy endless guesses at the code.
- **Per client address**: ``MAX_FAILURES_PER_ADDRESS`` failures within ``WINDOW``, whatever the usernames, lock the
  address for ``LOCKOUT`` (password spraying). Signing in never clears an address's count, or an attacker holding
  one account could sign into it between guesses and guess on forever.

Every guess that fails is audited (``admin.login.failed`` for a password, ``admin.login.otp_failed`` for a code), as
is every refusal (``admin.login.locked``), every sign-in (``admin.login``) and every device enrolled
(``admin.otp.enrolled``). Refusals are not guesses, so hammering a locked account does not lengthen its lock.
Usernames are counted case-insensitively, so ``Admin`` and ``admin`` share a count.

The price of locking by username is that anyone can keep an account locked by failing on purpose; staff then sign
in once the lock has passed or from an account not under attack. The client address is ``REMOTE_ADDR``, as
everywhere in the audit log: behind a proxy, that is the proxy's, and the per-address limit becomes a site-wide one.
"""

import time
from base64 import b32encode
from datetime import datetime, timedelta

import django_otp
import qrcode
import qrcode.image.svg
from django import forms
from django.contrib import admin, auth
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django_otp.plugins.otp_totp.models import TOTPDevice

from backoffice.models import SignInAttempt, SignInGuard
from core.admin_display import counted
from core.audit import Actor, audit_record
from core.models import AuditLog
from merchants.authentication import client_origin

WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=30)
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_ADDRESS = 20
STEP_TIME = timedelta(minutes=5)  # from the right password to the code
FAILED, CODE_FAILED, LOCKED = "admin.login.failed", "admin.login.otp_failed", "admin.login.locked"
SUCCEEDED, ENROLLED = "admin.login", "admin.otp.enrolled"
PENDING = "backoffice.sign_in"  # the session's note of who passed the password step: {user, hash, backend, at, next}


class Locked(Exception):
    """Too many failed guesses for this username or from this address: no guess is checked ``until`` then."""

    def __init__(self, until: datetime):
        super().__init__("too many failed sign-in attempts")
        self.until = until


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )

    def clean_code(self):
        code = "".join(self.cleaned_data["code"].split())
        if not (code.isdigit() and len(code) == 6):
            raise ValidationError("Enter the 6-digit code your authenticator app shows.")
        return code


# ------------------------------------------------------------------------------------------------------------
# The steps
# ------------------------------------------------------------------------------------------------------------
@never_cache
@sensitive_post_parameters("password")
@login_not_required
def login(request, extra_context=None):
    """/admin/login/: the username and password; right, on to the code (or to enrolment for a staff member without
    a device)."""
    if request.method == "GET" and admin.site.has_permission(request):
        return redirect("admin:index")
    next_url = request.POST.get("next") or request.GET.get("next") or reverse("admin:index")
    extra = {"next": next_url, **(extra_context or {})}
    if request.method != "POST":
        return _page(request, "admin/login.html", form=AdminAuthenticationForm(request), **extra)

    form = AdminAuthenticationForm(request, data=request.POST)
    username = request.POST.get("username", "")
    if not (username and request.POST.get("password")):  # nothing to check: the form says what is missing
        form.is_valid()
        return _page(request, "admin/login.html", form=form, **extra)
    user_key = _user_key(username)
    try:
        attempt = guess_start(user_key=user_key, origin=client_origin(request))
    except Locked as locked:
        _audit(request, LOCKED, user_key=user_key, username=username)
        form = AdminAuthenticationForm(request, initial={"username": username})
        form.cleaned_data = {}  # an unbound form has none; add_error needs it to show a non-field error
        return _locked_page(request, "admin/login.html", form=form, until=locked.until, **extra)

    if not form.is_valid():
        guess_finish(attempt=attempt, outcome=SignInAttempt.FAILED)
        _audit(request, FAILED, user_key=user_key, username=username)
        return _page(request, "admin/login.html", form=form, **extra)
    guess_finish(attempt=attempt, outcome=SignInAttempt.PASSED)
    user = form.get_user()
    request.session[PENDING] = {
        "user": user.pk,
        "hash": user.get_session_auth_hash(),
        "backend": user.backend,
        "at": time.time(),
        "next": next_url if _is_safe(request, next_url) else reverse("admin:index"),
    }
    return redirect("admin:login_code" if _device(user) else "admin:login_enrol")


@never_cache
@sensitive_post_parameters("code")
@login_not_required
def code(request):
    """/admin/login/code/: the code of the staff member's device, after their password."""
    user = _pending_user(request)
    if user is None:
        return redirect("admin:login")
    device = _device(user)
    if device is None:
        return redirect("admin:login_enrol")
    form = CodeForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        return _code_guess(request, user=user, device=device, form=form, template="admin/login_code.html")
    return _page(request, "admin/login_code.html", form=form, pending=user)


@never_cache
@sensitive_post_parameters("code")
@login_not_required
def enrol(request):
    """/admin/login/enrol/: a new device for a staff member without one, after their password. A GET shows a new key
    (and forgets any shown before); the first code it makes confirms it and signs them in."""
    user = _pending_user(request)
    if user is None:
        return redirect("admin:login")
    if _device(user) is not None:
        return redirect("admin:login_code")
    if request.method != "POST":
        device = device_enrol_start(user=user)
        return _page(
            request, "admin/login_enrol.html", form=CodeForm(), pending=user, qr_code=_qr_svg(device), key=_key(device)
        )
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        return redirect("admin:login_enrol")
    form = CodeForm(request.POST)
    if form.is_valid():
        return _code_guess(request, user=user, device=device, form=form, template="admin/login_enrol.html")
    return _page(request, "admin/login_enrol.html", form=form, pending=user)


def _code_guess(request, *, user, device: TOTPDevice, form: CodeForm, template: str):
    """One guess at the code: refused while locked, else checked; right, the staff member is signed in."""
    username, user_key = user.get_username(), _user_key(user.get_username())
    try:
        attempt = guess_start(user_key=user_key, origin=client_origin(request))
    except Locked as locked:
        _audit(request, LOCKED, user_key=user_key, username=username)
        del request.session[PENDING]  # start again from the password once the lock ends
        return _locked_page(request, template, form=form, until=locked.until, pending=user)

    if django_otp.verify_token(user, device.persistent_id, form.cleaned_data["code"]) is None:
        guess_finish(attempt=attempt, outcome=SignInAttempt.FAILED)
        _audit(request, CODE_FAILED, user_key=user_key, username=username)
        form.add_error("code", "That code is not right: enter the one your authenticator app shows now.")
        return _page(request, template, form=form, pending=user)

    guess_finish(attempt=attempt, outcome=SignInAttempt.SIGNED_IN)
    pending = request.session.pop(PENDING)
    auth.login(request, user, backend=pending["backend"])
    if not device.confirmed:
        device_enrol_confirm(device=device, actor=_staff(request, user))
    django_otp.login(request, device)
    _audit(request, SUCCEEDED, user_key=user_key, username=username, actor=_staff(request, user))
    return redirect(pending["next"])


# ------------------------------------------------------------------------------------------------------------
# Counting guesses
# ------------------------------------------------------------------------------------------------------------
def guess_start(*, user_key: str, origin: str) -> SignInAttempt:
    """Write down one guess for ``user_key`` from ``origin`` before it is checked: a ``SignInAttempt`` that counts as
    a failure until ``guess_finish`` says otherwise. Written under the row locks of the username's and the address's
    ``SignInGuard`` (made when missing), so parallel guesses count one after the other; attempts of theirs too old to
    count again are deleted on the way.

    Raises ``Locked`` when the username or the address already holds its limit of failures in the window.
    """
    keys = sorted({f"user:{user_key}", f"address:{origin}"} if origin else {f"user:{user_key}"})
    with transaction.atomic():
        SignInGuard.objects.bulk_create([SignInGuard(key=key) for key in keys], ignore_conflicts=True)
        list(SignInGuard.objects.select_for_update().filter(key__in=keys).order_by("key"))
        now = timezone.now()  # once the locks are held: a guess that waited for them counts from now
        until = locked_until(user_key=user_key, origin=origin, now=now)
        if until is not None:
            raise Locked(until)
        mine = Q(user_key=user_key) | Q(origin=origin) if origin else Q(user_key=user_key)
        SignInAttempt.objects.filter(mine, created_at__lte=now - WINDOW - LOCKOUT).delete()
        return SignInAttempt.objects.create(user_key=user_key, origin=origin, created_at=now)


def guess_finish(*, attempt: SignInAttempt, outcome: str) -> None:
    """Record how a guess ended: ``FAILED`` keeps counting; ``PASSED`` (a right password, its code to come) no
    longer does; ``SIGNED_IN`` also starts the username's count afresh."""
    SignInAttempt.objects.filter(pk=attempt.pk).update(outcome=outcome)


def locked_until(*, user_key: str, origin: str, now: datetime | None = None) -> datetime | None:
    """When the lock on this username or address ends, or None when neither is locked."""
    now = now or timezone.now()
    since = now - WINDOW - LOCKOUT  # the oldest failure that may still be part of a lock
    counted = SignInAttempt.objects.filter(outcome__in=SignInAttempt.COUNTED, created_at__gt=since)
    signed_in = (
        SignInAttempt.objects.filter(user_key=user_key, outcome=SignInAttempt.SIGNED_IN, created_at__gt=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    ends = [
        _lock_end(counted.filter(user_key=user_key, created_at__gt=signed_in or since), MAX_FAILURES_PER_USERNAME),
        _lock_end(counted.filter(origin=origin), MAX_FAILURES_PER_ADDRESS) if origin else None,
    ]
    ends = [end for end in ends if end is not None and end > now]
    return max(ends) if ends else None


def _lock_end(failures, limit: int) -> datetime | None:
    # ``LOCKOUT`` after the latest failure that made ``limit`` failures within ``WINDOW``.
    times = list(failures.order_by("-created_at").values_list("created_at", flat=True))
    for index in range(len(times) - limit + 1):
        if times[index] - times[index + limit - 1] <= WINDOW:
            return times[index] + LOCKOUT
    return None


# ------------------------------------------------------------------------------------------------------------
# Devices
# ------------------------------------------------------------------------------------------------------------
def device_enrol_start(*, user) -> TOTPDevice:
    """A new, unconfirmed TOTP device for ``user``, in place of any unconfirmed one: the key shown before is
    forgotten, so each key is shown once. Writes the device; deletes the user's other unconfirmed devices."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


def device_enrol_confirm(*, device: TOTPDevice, actor: Actor) -> None:
    """Confirm ``device`` once a code of its key was right: from now on it is the user's second factor and its key is
    never shown again. Writes the device and an ``admin.otp.enrolled`` audit row."""
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_record(
            actor=actor,
            action=ENROLLED,
            object_type="user",
            object_id=_user_key(device.user.get_username()),
            detail={"username": device.user.get_username()[:150], "device": device.name},
        )


def _device(user) -> TOTPDevice | None:
    """The user's confirmed TOTP device, or None when they have not enrolled one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def _qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// URL as a QR code, inline SVG on white (scannable in the admin's dark theme too). Safe
    markup: the library writes only shapes, and the URL (the username among it) is in them as modules, not text."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathFillImage, box_size=12)
    return mark_safe(image.to_string(encoding="unicode"))


def _key(device: TOTPDevice) -> str:
    """The key as an authenticator app's "enter a setup key" asks for it: base32, in groups of four."""
    key = b32encode(device.bin_key).decode()
    return " ".join(key[index : index + 4] for index in range(0, len(key), 4))


# ------------------------------------------------------------------------------------------------------------
# The pages and the session
# ------------------------------------------------------------------------------------------------------------
def _pending_user(request):
    """The staff member who passed the password step in this session, within ``STEP_TIME``, or None; None as well
    when their password changed or they were deactivated since."""
    pending = request.session.get(PENDING)
    if not pending or time.time() - pending["at"] > STEP_TIME.total_seconds():
        return None
    user = auth.get_user_model()._default_manager.filter(pk=pending["user"], is_active=True, is_staff=True).first()
    if user is None or not constant_time_compare(user.get_session_auth_hash(), pending["hash"]):
        return None
    return user


def _page(request, template: str, *, form, status: int = 200, **extra) -> TemplateResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "subtitle": None,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
        "form": form,
        **extra,
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, template, context, status=status)


def _locked_page(request, template: str, *, form, until: datetime, **extra) -> TemplateResponse:
    """The step's page with the reason it refuses, answered 429 with ``Retry-After``."""
    seconds = max(1, int((until - timezone.now()).total_seconds()) + 1)
    form.add_error(
        None,
        "Too many failed logins for this account or from this address. "
        f"Try again in {counted(-(-seconds // 60), 'minute')}.",
    )
    response = _page(request, template, form=form, status=429, **extra)
    response["Retry-After"] = str(seconds)
    return response


def _audit(request, action: str, *, user_key: str, username: str, actor: Actor | None = None) -> None:
    audit_record(
        actor=actor or Actor("anonymous", origin=client_origin(request)),
        action=action,
        result=AuditLog.SUCCESS if action == SUCCEEDED else AuditLog.FAILURE,
        object_type="user",
        object_id=user_key,
        detail={"username": username[:150]},
    )


def _staff(request, user) -> Actor:
    return Actor(f"admin:{user.get_username()}", origin=client_origin(request))


def _is_safe(request, url: str) -> bool:
    return url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())


def _user_key(username: str) -> str:
    return username.strip().casefold()[:64]
