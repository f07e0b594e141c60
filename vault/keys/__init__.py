"""Key custody: the data encryption keys (DEKs) and the fingerprint key, stored wrapped by the key encryption key
(KEK); this process's key ring; cryptoperiods; rotation; and the move from ``VAULT_KEYS``.

**The keys.** Every key the data is encrypted under is a row of ``vault.models.DataKey``: wrapped by the KEK of the
provider ``VAULT_KEK_PROVIDER`` chooses (``vault.kek``), with its check value. DEK versions are the numbers the
encrypted rows' ``key_version`` columns hold; the newest one not retired is *active*: new data is encrypted under it.
On an empty database the first card operation makes the fingerprint key and DEK 1 (two processes doing so at once
store one of each: the unique constraints, and the loser reads the winner's).

**This process's ring** (``key_ring()``, the one way card code gets keys). Keys are unwrapped on first use and kept
for the process's life: the fingerprint key and the active DEK when the process first works on cards, any other
version the first time a value under it is read (``KeyRing.fetch``), so any process reads whatever any other wrote.
The process looks at the rows again at most every ``VAULT_KEY_CHECK_SECONDS`` (one query on a table of a few rows,
and one on the primary key of the tokens): to switch to a newer active DEK, to start a new one when the cryptoperiod
of the active one is over, and to find what keeps it from serving (``keys_problems``: a key that does not unwrap
under this process's KEK, or unwraps to another key than the data's). While there is any, card operations answer
503 ``keysNotReady`` and the problems are logged once, not per request.

**Cryptoperiods.** A new DEK is started when the active one is ``VAULT_DEK_MAX_AGE_DAYS`` old or has encrypted
``VAULT_DEK_MAX_USES`` cards since it became active. The cards are counted as the tokens made since (the highest
token id against the one recorded at the start of the period: an index lookup), not by a counter that every tokenize
would update, which would make every tokenize of every process wait for the same row. ``rotate_keys``
(``keys_rotate``) then moves the older values to it; versions left with nothing are retired.

**The KEK out of reach** (an HSM down, ``vault.kek.KekUnavailable``): what is in memory keeps working; an operation
needing a key that is not answers 503 (``KeysUnreachable``), the outage is logged once when it starts and once when
it ends, and the provider is asked again at most every ``KEK_RETRY_SECONDS``, so an outage does not send every
request to an HSM that does not answer. A new active DEK that cannot be unwrapped yet leaves the process encrypting
under the one it has.

**Before key custody** the keys came from ``VAULT_KEYS`` and ``VAULT_FINGERPRINT_KEY``, their check values alone
stored. ``keys_migrate_to_kek`` wraps them under the KEK with the same versions and check values, so no encrypted row
changes; until it has, a process given those variables serves with them, checked against the stored values.
"""

# The package's one face: what other modules use, from wherever it is written.
from vault.keys.migration import KeyMigration, keys_migrate_to_kek
from vault.keys.ring import (
    LegacyKeys,
    dek_create,
    encrypted_models,
    kek_outage_known,
    key_ring,
    key_ring_refresh,
    keys_awaiting_migration,
    keys_problems,
    legacy_keys,
    reset_custody,
)
from vault.keys.rotation import (
    KekRotation,
    Rotation,
    kek_rotate,
    keks_in_use,
    key_versions_retire,
    keys_rotate,
    values_on_other_versions,
)

__all__ = [
    "KekRotation",
    "KeyMigration",
    "LegacyKeys",
    "Rotation",
    "dek_create",
    "encrypted_models",
    "kek_outage_known",
    "kek_rotate",
    "keks_in_use",
    "key_ring",
    "key_ring_refresh",
    "key_versions_retire",
    "keys_awaiting_migration",
    "keys_migrate_to_kek",
    "keys_problems",
    "keys_rotate",
    "legacy_keys",
    "reset_custody",
    "values_on_other_versions",
]
