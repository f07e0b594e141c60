import hashlib
import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from merchants.models import Merchant

# 34 characters: digits and capitals without I and O, which read as 1 and 0.
TOKEN_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
TOKEN_ID_LENGTH = 19


# Rejection sampling over random bytes: a byte below 238 (7 × 34) picks a letter uniformly, the rest are dropped.
# 32 bytes keep 19 or more with a probability short of 1 by about 1e-13.
_ID_LETTERS = bytes(ord(TOKEN_ID_ALPHABET[b % 34]) if b < 238 else 0 for b in range(256))
_ID_DROPPED = bytes(range(238, 256))
TOKEN_ID_RANDOM_BYTES = 32
assert len(TOKEN_ID_ALPHABET) == 34


def token_id_from(random: bytes) -> str | None:
    """The token id ``TOKEN_ID_RANDOM_BYTES`` random bytes make: 19 uniform picks from the alphabet; None when too
    few of them make letters."""
    letters = random.translate(_ID_LETTERS, _ID_DROPPED)
    return letters[:TOKEN_ID_LENGTH].decode() if len(letters) >= TOKEN_ID_LENGTH else None


def new_token_id() -> str:
    # One read of random bytes, not a secrets.choice (and a system call) per letter: every token pays for this.
    while (token_id := token_id_from(secrets.token_bytes(TOKEN_ID_RANDOM_BYTES))) is None:
        pass
    return token_id


def new_token_reference() -> str:
    # 192 random bits, URL-safe: the last segment of the token's href.
    return secrets.token_urlsafe(24)


class Namespace(models.Model):
    """A merchant's group of at most 16 cards (one shopper, say). Its row is the lock for the card limit."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="namespaces")
    name = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "name"], name="namespace_unique_per_merchant")]
        ordering = ["name"]

    def __str__(self):
        return self.name


class Token(models.Model):
    """A card in the vault. The number is only ever stored encrypted; a deleted token keeps a masked tombstone."""

    # The column key rotation re-encrypts (with key_version and associated_data()); see vault.keys.keys_rotate.
    encrypted_field = "pan_ciphertext"
    # How the audit log names a token (core.audit.audit_record).
    audit_type = "token"

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="tokens")
    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, null=True, blank=True, related_name="tokens")
    # Unique through Meta.constraints (see there).
    token_id = models.CharField(max_length=TOKEN_ID_LENGTH, default=new_token_id, editable=False)
    reference = models.CharField(max_length=32, default=new_token_reference, editable=False)
    description = models.CharField(max_length=255)

    # Card: encrypted number and its HMAC fingerprint; masked parts for display and search.
    fingerprint = models.CharField(max_length=64, null=True, editable=False)
    pan_ciphertext = models.BinaryField(null=True, editable=False)
    key_version = models.PositiveSmallIntegerField(null=True, editable=False)
    bin = models.CharField(max_length=6, editable=False)
    last_four = models.CharField(max_length=4, editable=False)
    pan_length = models.PositiveSmallIntegerField(editable=False)
    brand = models.CharField(max_length=12, editable=False)
    card_holder_name = models.CharField(max_length=255, blank=True)
    expiry_month = models.PositiveSmallIntegerField(null=True)
    expiry_year = models.PositiveSmallIntegerField(null=True)
    billing_address = models.JSONField(null=True, blank=True)
    scheme_transaction_reference = models.CharField(max_length=56, null=True, blank=True)

    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_reason = models.CharField(max_length=20, blank=True)
    # The tokenId of the card's newest network token that is not deleted ("" when none), for the token's
    # ``networkToken`` link: kept by the networks app through ``vault.services.tokens_network_token_set``.
    network_token_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        # Every insert pays for every index (an import adds a million rows at a time): each one here serves a query.
        # Unique and indexed text columns are declared here rather than with unique=True or db_index=True, which on
        # PostgreSQL add a second, varchar_pattern_ops index for LIKE; nothing searches these columns by prefix (the
        # admin matches tokenId, BIN and last four exactly).
        indexes = [
            models.Index(fields=["bin"], name="token_bin"),
            models.Index(fields=["last_four"], name="token_last_four"),
            models.Index(fields=["brand"], name="token_brand"),  # the admin's brand filter
            # Tombstones only: live tokens (deleted_at NULL, nearly all rows) stay out of it, and no query looks for
            # them through it ("live" is the partial unique indexes' condition below).
            models.Index(fields=["deleted_at"], name="token_deleted_at", condition=Q(deleted_at__isnull=False)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["token_id"], name="token_token_id_unique"),
            models.UniqueConstraint(fields=["reference"], name="token_reference_unique"),
            # One live token per card, per merchant, per namespace (or none): the identity of a token.
            models.UniqueConstraint(
                fields=["merchant", "fingerprint", "namespace"],
                condition=Q(deleted_at__isnull=True, namespace__isnull=False),
                name="token_one_live_per_card_and_namespace",
            ),
            models.UniqueConstraint(
                fields=["merchant", "fingerprint"],
                condition=Q(deleted_at__isnull=True, namespace__isnull=True),
                name="token_one_live_per_card_without_namespace",
            ),
            models.CheckConstraint(
                condition=Q(deleted_at__isnull=False) | Q(pan_ciphertext__isnull=False, fingerprint__isnull=False),
                name="token_live_has_card",
            ),
            models.CheckConstraint(
                condition=Q(expiry_month__isnull=True) | Q(expiry_month__gte=1, expiry_month__lte=12),
                name="token_expiry_month_valid",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self):
        return self.token_id

    @property
    def audit_id(self) -> str:
        return self.token_id

    @property
    def masked_number(self) -> str:
        return masked_number(self.bin, self.pan_length, self.last_four)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())

    def associated_data(self) -> bytes:
        return token_associated_data(self.merchant_id, self.token_id)


def masked_number(bin: str, pan_length: int, last_four: str) -> str:
    """A card number as every answer shows it: its first four and last four digits, stars between."""
    return bin[:4] + "*" * (pan_length - 8) + last_four


def token_associated_data(merchant_id: int, token_id: str) -> bytes:
    """What a token's card number is encrypted with, so its ciphertext decrypts for that token and merchant only."""
    return f"token:{merchant_id}:{token_id}".encode()


class TokenConflict(models.Model):
    """Requested values that differed from a token's stored ones; pending until applied, dismissed or expired.

    A column is NULL when its value did not conflict (``vault.services.card_tokenize`` decides what does).
    """

    token = models.OneToOneField(Token, on_delete=models.CASCADE, related_name="conflict")
    card_holder_name = models.CharField(max_length=255, null=True, blank=True)
    expiry_month = models.PositiveSmallIntegerField(null=True, blank=True)
    expiry_year = models.PositiveSmallIntegerField(null=True, blank=True)
    billing_address = models.JSONField(null=True, blank=True)
    scheme_transaction_reference = models.CharField(max_length=56, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"conflict on {self.token.token_id}"

    def is_pending(self, now=None) -> bool:
        return self.expires_at > (now or timezone.now())


class ExpiryExtension(models.Model):
    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="expiry_extensions")
    old_expires_at = models.DateTimeField()
    new_expires_at = models.DateTimeField()
    reason = models.CharField(max_length=40)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.old_expires_at:%Y-%m-%d} → {self.new_expires_at:%Y-%m-%d} ({self.reason})"


class DataKey(models.Model):
    """A key the data is encrypted under: a data encryption key (DEK) of card numbers and the other encrypted columns,
    or the fingerprint key. Stored only wrapped by the key encryption key (KEK, ``vault.kek``), and unwrapped into a
    process's memory on first use (``vault.keys``): never in clear here, nor in any backup of this table.

    One row per DEK version (the number the encrypted rows' ``key_version`` columns hold), and one for the fingerprint
    key. ``kek_id`` names the KEK it is wrapped under, so ``rotate_kek`` finds the rows to re-wrap under a new one;
    ``check_value`` (the first 8 bytes of an HMAC of a fixed label under the key: ``vault.crypto.check_value``) tells
    whether what a KEK unwraps is the key the data was written with, without saying anything of it.

    A row without a wrapped key is a key from before key custody, from ``VAULT_KEYS`` or ``VAULT_FINGERPRINT_KEY``,
    whose check value alone is recorded: ``migrate_keys_to_kek`` wraps it, with the same version and check value.
    """

    ENCRYPTION, FINGERPRINT = "encryption", "fingerprint"

    purpose = models.CharField(max_length=12, choices=[(ENCRYPTION, "encryption"), (FINGERPRINT, "fingerprint")])
    # The key version (encryption keys only).
    version = models.PositiveSmallIntegerField(null=True, blank=True)
    # AES key wrap of the 32-byte key under the KEK ``kek_id`` (40 bytes); NULL for a key not wrapped yet (above).
    wrapped_key = models.BinaryField(null=True, editable=False)
    # ``local:<check value>`` or ``pkcs11:<label>``; "" while not wrapped. The database default lets a process of the
    # previous release, still serving during an upgrade, record a check value as it used to.
    kek_id = models.CharField("KEK", max_length=200, blank=True, default="", db_default="")
    # Blank only for a version found holding data when the check values were first recorded (migration 0005), until
    # migrate_keys_to_kek records it.
    check_value = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The start of a DEK's cryptoperiod (VAULT_DEK_MAX_AGE_DAYS, VAULT_DEK_MAX_USES): when it was made, or wrapped by
    # migrate_keys_to_kek; and the highest token id then (NULL when there was no token), so that the cards encrypted
    # under it since are counted through the primary key (index lookups) rather than by a counter every tokenize
    # would have to update.
    period_started_at = models.DateTimeField(null=True, blank=True)
    token_pk_at_start = models.BigIntegerField(null=True, blank=True)
    # Set by rotate_keys once no row is left under the version. Its wrapped key stays, for the backups made under it.
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table of the check values this model grew from, under its old name: a process of the previous release
        # reads it while an upgrade rolls out, and finds its rows as it left them.
        db_table = "vault_keycheck"
        verbose_name = "key"
        constraints = [
            models.UniqueConstraint(
                fields=["version"], condition=Q(purpose="encryption"), name="keycheck_one_per_encryption_version"
            ),
            models.UniqueConstraint(
                fields=["purpose"], condition=Q(purpose="fingerprint"), name="keycheck_one_fingerprint_key"
            ),
            models.CheckConstraint(
                condition=Q(purpose="encryption", version__isnull=False)
                | Q(purpose="fingerprint", version__isnull=True),
                name="keycheck_version_for_encryption_keys_only",
            ),
            # A wrapped key names its KEK and has its check value; a key not wrapped names no KEK.
            models.CheckConstraint(
                condition=Q(wrapped_key__isnull=True, kek_id="")
                | (Q(wrapped_key__isnull=False) & ~Q(kek_id="") & ~Q(check_value="")),
                name="datakey_wrapped_names_its_kek",
            ),
        ]
        ordering = ["purpose", "version"]

    def __str__(self):
        return f"{self.purpose} key {self.version}" if self.version else f"{self.purpose} key"

    @property
    def is_wrapped(self) -> bool:
        return self.wrapped_key is not None


def new_destination_id() -> str:
    return f"fwd_{secrets.token_urlsafe(12)}"


def new_forward_id() -> str:
    return f"fw_{secrets.token_urlsafe(12)}"


class ForwardDestination(models.Model):
    """Where a merchant's forwards may go (``vault.forwarding``): an https origin with an optional path prefix, and
    the credentials the provider wants (its API key, say), which a forward fills in without the merchant sending
    them.

    The credentials (name → secret) are encrypted together under the key ring and bound to the destination and its
    merchant (``associated_data``), never in clear at rest, names included: a name is the merchant's to choose, any
    text. Answers and the admin show the names only (``vault.forwarding.destinations``).
    """

    # The column key rotation re-encrypts (with key_version and associated_data()); see vault.keys.keys_rotate.
    encrypted_field = "credentials_ciphertext"
    audit_type = "forward_destination"

    public_id = models.CharField(max_length=40, default=new_destination_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="forward_destinations")
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=255, blank=True)
    credentials_ciphertext = models.BinaryField(editable=False)
    key_version = models.PositiveSmallIntegerField(editable=False)
    is_enabled = models.BooleanField("enabled", default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "forward destination"
        constraints = [
            # Indexed here rather than with unique=True (see Token.Meta): nothing looks for it by prefix.
            models.UniqueConstraint(fields=["public_id"], name="forwarddestination_public_id_unique"),
            models.CheckConstraint(
                condition=Q(is_enabled=True) | Q(disabled_at__isnull=False),
                name="forwarddestination_disabled_has_time",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.public_id})"

    @property
    def audit_id(self) -> str:
        return self.public_id

    def associated_data(self) -> bytes:
        return f"forward-destination:{self.merchant_id}:{self.public_id}".encode()


class Forward(models.Model):
    """One request a merchant had the vault send to a destination (``POST /forward``): the log staff read.

    Never a card number, a cryptogram or a credential: ``path`` is the template the merchant sent, expressions
    unfilled, and nothing of the bodies or headers is kept.
    """

    audit_type = "forward"

    public_id = models.CharField(max_length=40, default=new_forward_id, editable=False)
    # Indexed by forward_by_merchant, which leads with it, rather than by an index of its own.
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="forwards", db_index=False)
    # Kept when the destination is deleted: the log outlives it (its audit rows name it).
    destination = models.ForeignKey(
        ForwardDestination, on_delete=models.SET_NULL, null=True, blank=True, related_name="forwards"
    )
    token = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="forwards")
    network_token_id = models.CharField("network token", max_length=64, blank=True)
    method = models.CharField(max_length=6)
    path = models.CharField(max_length=2048, blank=True, help_text="As sent, expressions unfilled.")
    status_code = models.PositiveSmallIntegerField("status", null=True, blank=True)
    duration_ms = models.PositiveIntegerField("duration (ms)", null=True, blank=True)
    error = models.CharField(max_length=40, blank=True, help_text="The error name when the destination failed.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # The admin's list, newest first, and its merchant filter (the foreign key's lookups use its first
            # column).
            models.Index(fields=["created_at"], name="forward_created_at"),
            models.Index(fields=["merchant", "created_at"], name="forward_by_merchant"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="forward_public_id_unique"),
        ]

    def __str__(self):
        return f"{self.method} {self.path or '/'} ({self.public_id})"

    @property
    def audit_id(self) -> str:
        return self.public_id


def new_capture_session_id() -> str:
    return f"cs_{secrets.token_urlsafe(16)}"


# A capture session takes this many failed submissions (a wrong client secret, a card its rules refuse), then none.
CAPTURE_MAX_FAILED_SUBMISSIONS = 5
# How its card was tokenized: as POST /tokens' 201, 200 and 409.
CAPTURE_OUTCOMES = ("created", "matched", "conflict")
# What a session is in (CaptureSession.status).
CAPTURE_STATUSES = ("open", "completed", "expired", "locked")


class CaptureSession(models.Model):
    """One card captured in a shopper's browser (``vault.capture``): opened by the merchant's server for one page
    origin, it takes one card, for a few minutes, from whoever holds its client secret.

    The secret itself is never stored: its SHA-256 is (it is 256 random bits, so a slow hash buys nothing, as for API
    keys). Nothing of the card is kept here either: a completed session names the token that holds it.
    """

    audit_type = "capture_session"

    public_id = models.CharField(max_length=40, default=new_capture_session_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="capture_sessions")
    # scheme://host[:port], lower case, without the default port: as a browser writes the page's origin.
    origin = models.CharField(max_length=300)
    # What the card is tokenized with, as POST /tokens would take them.
    namespace = models.CharField(max_length=64, null=True, blank=True)
    description = models.CharField(max_length=255, null=True, blank=True)
    client_secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    failed_submissions = models.PositiveSmallIntegerField(default=0)
    # Protected, as a forward's: tokens are never removed, a deleted one leaves its tombstone.
    token = models.ForeignKey(Token, on_delete=models.PROTECT, null=True, blank=True, related_name="capture_sessions")
    outcome = models.CharField(
        max_length=8, choices=[(outcome, outcome) for outcome in CAPTURE_OUTCOMES], null=True, blank=True
    )
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "capture session"
        constraints = [
            # Indexed here rather than with unique=True (see Token.Meta): nothing looks for it by prefix.
            models.UniqueConstraint(fields=["public_id"], name="capturesession_public_id_unique"),
            models.CheckConstraint(
                condition=Q(failed_submissions__lte=CAPTURE_MAX_FAILED_SUBMISSIONS),
                name="capturesession_failed_submissions_at_most_five",
            ),
            # Open, or completed with its one card: the token, how it was tokenized and when, all or nothing.
            models.CheckConstraint(
                condition=Q(completed_at__isnull=True, token__isnull=True, outcome__isnull=True)
                | Q(
                    completed_at__isnull=False,
                    token__isnull=False,
                    # Spelt out: IN is NULL for a NULL outcome, and a check that is NULL passes.
                    outcome__isnull=False,
                    outcome__in=CAPTURE_OUTCOMES,
                ),
                name="capturesession_completed_has_one_card",
            ),
        ]

    def __str__(self):
        return self.public_id

    @property
    def audit_id(self) -> str:
        return self.public_id

    @staticmethod
    def secret_hash(client_secret: str) -> str:
        return hashlib.sha256(client_secret.encode()).hexdigest()

    @property
    def is_completed(self) -> bool:
        return self.completed_at is not None

    @property
    def is_locked(self) -> bool:
        return self.failed_submissions >= CAPTURE_MAX_FAILED_SUBMISSIONS

    def is_expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())

    def status(self, now=None) -> str:
        """``completed`` or ``locked`` for good; else ``expired`` once its time is up, ``open`` until then."""
        if self.is_completed:
            return "completed"
        if self.is_locked:
            return "locked"
        return "expired" if self.is_expired(now) else "open"
