"""What the staff sign-in counts to hold off brute force (backoffice.admin_login)."""

from django.db import models
from django.utils import timezone


class SignInGuard(models.Model):
    """One row per username and per client address that tried to sign in. A guess locks both of its rows
    (``select_for_update``) while it counts the failures before it and writes itself down: guesses in parallel take
    their turn there, each seeing every guess before it."""

    key = models.CharField(max_length=80, unique=True)  # "user:<username>" or "address:<address>"

    def __str__(self):
        return self.key


class SignInAttempt(models.Model):
    """One guess at a staff member's password or code, written down before it is checked.

    It counts as a failure from then on (``CHECKING``, then ``FAILED``) unless it proves right: ``PASSED`` is a right
    password whose code is still to come, ``SIGNED_IN`` a right code, which starts the username's count afresh.
    """

    CHECKING, FAILED, PASSED, SIGNED_IN = "checking", "failed", "passed", "signed-in"
    OUTCOMES = [(CHECKING, "being checked"), (FAILED, "failed"), (PASSED, "password right"), (SIGNED_IN, "signed in")]
    COUNTED = (CHECKING, FAILED)

    user_key = models.CharField(max_length=64)
    origin = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=10, choices=OUTCOMES, default=CHECKING)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user_key", "created_at"], name="signin_attempt_user"),
            models.Index(fields=["origin", "created_at"], name="signin_attempt_origin"),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.user_key} {self.outcome}"
