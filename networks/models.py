import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from merchants.models import Merchant
from vault.models import Token

NETWORKS = ("VISA", "MASTERCARD", "AMEX")


def new_request_id() -> str:
    return f"req_{secrets.token_urlsafe(12)}"


def new_batch_id() -> str:
    return f"bat_{secrets.token_urlsafe(12)}"


class Issuer(models.Model):
    """An issuing bank, found by the BIN range of its cards; the TSP asks it to approve each token.

    The registry's issuers are ``registered``. A card whose BIN no registered range holds gets an issuer of its own,
    made on first use, unregistered and keyed by that one BIN (``networks.services.issuer_for``): the scheduler's rate
    limit and fairness are per issuer, so a bank the registry does not list yet is never lumped in with others.
    """

    name = models.CharField(max_length=120)
    network = models.CharField(max_length=12, choices=[(n, n) for n in NETWORKS])
    bin_low = models.CharField(max_length=6, help_text="First BIN of the range, 6 digits.")
    bin_high = models.CharField(max_length=6, help_text="Last BIN of the range, 6 digits.")
    card_art_ids = models.JSONField(default=list, blank=True)
    rate_limit_per_second = models.PositiveIntegerField(default=50)
    registered = models.BooleanField(
        default=True,
        help_text="In the issuer registry. Unregistered issuers were made for a BIN outside every registered range.",
    )
    # The scheduler's clock for this issuer: the earliest moment its next call may start (see networks.scheduling).
    next_call_at = models.DateTimeField(null=True, blank=True, editable=False)

    audit_type = "issuer"

    class Meta:
        ordering = ["network", "bin_low"]
        constraints = [
            models.CheckConstraint(condition=Q(bin_low__lte=models.F("bin_high")), name="issuer_bin_range_ordered"),
            models.CheckConstraint(condition=Q(rate_limit_per_second__gte=1), name="issuer_rate_limit_positive"),
            # Two workers meeting the same unknown BIN at once make one issuer for it.
            models.UniqueConstraint(
                fields=["network", "bin_low", "bin_high"],
                condition=Q(registered=False),
                name="issuer_one_unregistered_per_bin",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.network} {self.bin_low}–{self.bin_high})"

    @property
    def audit_id(self) -> str:
        return str(self.pk)


class NetworkToken(models.Model):
    """A payment-network token (DPAN) from a TSP; its number is encrypted like a card number."""

    encrypted_field = "dpan_ciphertext"
    audit_type = "network_token"

    ACTIVE, INACTIVE, SUSPENDED, DELETED = "ACTIVE", "INACTIVE", "SUSPENDED", "DELETED"
    STATUSES = [(s, s) for s in (ACTIVE, INACTIVE, SUSPENDED, DELETED)]

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="network_tokens")
    vault_token = models.ForeignKey(
        Token, on_delete=models.SET_NULL, null=True, blank=True, related_name="network_tokens"
    )
    token_id = models.CharField(max_length=64, unique=True, help_text="The TSP's tokenId.")
    network = models.CharField(max_length=12, choices=[(n, n) for n in NETWORKS], db_index=True)
    status = models.CharField(max_length=10, choices=STATUSES, db_index=True)
    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, related_name="network_tokens")
    dpan_ciphertext = models.BinaryField(null=True, editable=False)
    key_version = models.PositiveSmallIntegerField(null=True, editable=False)
    token_last_digits = models.CharField(max_length=4)
    token_expiry_month = models.PositiveSmallIntegerField()
    token_expiry_year = models.PositiveSmallIntegerField()
    card_bin = models.CharField(max_length=6)
    card_last_digits = models.CharField(max_length=4)
    card_expiry_month = models.PositiveSmallIntegerField()
    card_expiry_year = models.PositiveSmallIntegerField()
    payment_account_reference = models.CharField(max_length=29, db_index=True)
    account_id = models.CharField(max_length=64, blank=True)
    correlation_id = models.CharField(max_length=36)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.network} {self.token_id}"

    @property
    def audit_id(self) -> str:
        return self.token_id

    def associated_data(self) -> bytes:
        return f"network-token:{self.merchant_id}:{self.token_id}".encode()


class LifecycleEvent(models.Model):
    """What the TSP told us happened to a network token (SUSPENDED, ACTIVE, DELETED, CARD_UPDATED)."""

    SUSPENDED, RESUMED, DELETED, CARD_UPDATED = "SUSPENDED", "ACTIVE", "DELETED", "CARD_UPDATED"
    TYPES = [(t, t) for t in (SUSPENDED, RESUMED, DELETED, CARD_UPDATED)]

    network_token = models.ForeignKey(NetworkToken, on_delete=models.CASCADE, related_name="lifecycle_events")
    type = models.CharField(max_length=12, choices=TYPES)
    old_status = models.CharField(max_length=10)
    new_status = models.CharField(max_length=10)
    detail = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=200, help_text="Who triggered it: the TSP simulator, an operator, …")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"{self.type} {self.created_at:%Y-%m-%d %H:%M}"


class ProvisioningRequest(models.Model):
    """An asynchronous request for a network token: the card waits here, encrypted, until a worker takes it.

    A token the issuer wants a step-up for is created INACTIVE: the request then waits in PENDING_ACTIVATION (its
    card already destroyed) and ends when the network activates the token (SUCCEEDED) or deletes it (FAILED).

    The row, not the broker, says what is left to do: a PENDING request is due at ``next_attempt_at``; a message for
    it is trusted to arrive until ``queued_until``, and a worker owns an attempt until ``claimed_until``, under its
    ``claim``. Past either, the sweeper (``networks.services.provisioning_requests_sweep``) queues it again: a lost
    message or a killed worker delays a request, never loses it.
    """

    encrypted_field = "card_ciphertext"
    audit_type = "network_token_request"

    PENDING, PENDING_ACTIVATION, SUCCEEDED, FAILED = "PENDING", "PENDING_ACTIVATION", "SUCCEEDED", "FAILED"
    STATUSES = [(s, s) for s in (PENDING, PENDING_ACTIVATION, SUCCEEDED, FAILED)]

    public_id = models.CharField(max_length=40, unique=True, default=new_request_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="network_token_requests")
    correlation_id = models.CharField(max_length=36)
    network = models.CharField(max_length=12, blank=True, help_text="The card's network, known when accepted.")
    status = models.CharField(max_length=20, choices=STATUSES, default=PENDING, db_index=True)
    vault_token = models.ForeignKey(Token, on_delete=models.SET_NULL, null=True, blank=True)
    # A card sent in the request itself (not from the vault): encrypted, and destroyed once the request ends.
    card_ciphertext = models.BinaryField(null=True, editable=False)
    key_version = models.PositiveSmallIntegerField(null=True, editable=False)
    account_id = models.CharField(max_length=64, blank=True)
    email = models.CharField(max_length=254, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a PENDING request is due.")
    queued_until = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=32, blank=True, editable=False)
    network_token = models.ForeignKey(NetworkToken, on_delete=models.SET_NULL, null=True, blank=True)
    failure_reason = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweeper's question, "which pending requests are due", on the few rows still pending.
            models.Index(fields=["next_attempt_at"], name="request_pending_due", condition=Q(status="PENDING")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="PENDING") | Q(next_attempt_at__isnull=False),
                name="request_pending_has_next_attempt",
            ),
        ]

    def __str__(self):
        return self.public_id

    @property
    def audit_id(self) -> str:
        return self.public_id

    def associated_data(self) -> bytes:
        return f"provisioning-request:{self.merchant_id}:{self.public_id}".encode()


class Batch(models.Model):
    PENDING, RUNNING, COMPLETED = "PENDING", "RUNNING", "COMPLETED"
    STATUSES = [(s, s) for s in (PENDING, RUNNING, COMPLETED)]

    public_id = models.CharField(max_length=40, unique=True, default=new_batch_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="network_token_batches")
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    total = models.PositiveIntegerField()
    # Items that ended (succeeded or failed), counted in the transaction that ends them: the batch is complete when
    # this reaches ``total``, without looking at its items again.
    finished = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        constraints = [
            # An item counted twice would complete its batch early: refuse the write instead.
            models.CheckConstraint(condition=Q(finished__lte=models.F("total")), name="batch_finished_within_total"),
        ]

    def __str__(self):
        return self.public_id


class BatchItem(models.Model):
    """One vault token of a batch, an asynchronous request of its own: its outcome is a webhook carrying its
    correlation id. QUEUED items were released by the scheduler and sit in the broker; a RUNNING one is in a worker's
    hands (since ``called_at``, renewed while the worker gets on with the items claimed with it), under that worker's
    ``claim``. A PENDING_ACTIVATION one got an INACTIVE token (a step-up): it counts as finished for its batch, and
    becomes SUCCEEDED when the network activates the token, FAILED when it deletes it."""

    PENDING, QUEUED, RUNNING, PENDING_ACTIVATION = "PENDING", "QUEUED", "RUNNING", "PENDING_ACTIVATION"
    SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"
    STATUSES = [(s, s) for s in (PENDING, QUEUED, RUNNING, PENDING_ACTIVATION, SUCCEEDED, FAILED)]

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField(help_text="Position in the request's items array.")
    token_reference = models.CharField(max_length=200, help_text="The href or tokenId the merchant sent.")
    correlation_id = models.CharField(max_length=36, help_text="The item's own, or else its batch's id.")
    vault_token = models.ForeignKey(Token, on_delete=models.SET_NULL, null=True, blank=True)
    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, null=True, blank=True)
    account_id = models.CharField(max_length=64, blank=True)
    email = models.CharField(max_length=254, blank=True)
    status = models.CharField(max_length=20, choices=STATUSES, default=PENDING)
    queued_at = models.DateTimeField(null=True, blank=True)
    called_at = models.DateTimeField(null=True, blank=True, help_text="When the TSP call started.")
    # A random id per claim by a worker: one whose lease ran out (the item was given to another) finds it changed
    # and keeps its result out of the vault.
    claim = models.CharField(max_length=32, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    # Times the worker holding the item stopped before writing it (killed, out of memory, a crash in native code):
    # the dispatcher then releases it on its own, and fails it at the BATCH_ITEM_MAX_ABANDONED-th time.
    abandoned = models.PositiveSmallIntegerField(default=0, editable=False)
    network_token = models.ForeignKey(NetworkToken, on_delete=models.SET_NULL, null=True, blank=True)
    failure_reason = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=40, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="batch_item_unique_index")]
        indexes = [models.Index(fields=["status", "issuer"], name="batch_item_schedulable")]

    def __str__(self):
        return f"{self.batch} #{self.index}"
