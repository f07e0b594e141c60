"""The ``pkcs11`` KEK provider: the key encryption key lives in an HSM, reached through its PKCS#11 module
(``PKCS11_MODULE``, e.g. SoftHSM2's ``/usr/lib/softhsm/libsofthsm2.so`` or a network HSM's client library), on the
token ``PKCS11_TOKEN_LABEL``, logged in with ``PKCS11_PIN``, under the label ``PKCS11_KEY_LABEL``.

The KEK is generated inside the HSM (``create_kek``, ``manage.py kek_create``) as a token object that is sensitive,
non-extractable and allowed to wrap and unwrap keys and nothing else: no encrypt or decrypt, so the HSM is no oracle
for arbitrary data, and it cannot be modified afterwards. Its ``kek_id`` is ``pkcs11:<label>``: ``unwrap`` finds the
KEK named by the id it is given, so keys wrapped under an older label still unwrap while that key exists in the HSM
(``rotate_kek`` moves every wrapped key from one label to the next, and the old key can then be destroyed).

Wrapping is PKCS#11 key wrapping, ``CKM_AES_KEY_WRAP`` (RFC 3394, NIST SP 800-38F "KW"), done in the HSM: the key to
wrap enters it as a *session* object (never a token object: it is gone when the session ends, and we destroy it
at once anyway), the HSM wraps it under the KEK, and it leaves as 40 bytes; unwrapping makes a session object from
those bytes inside the HSM, whose value we read and destroy. Chosen over AES-GCM encryption in the HSM because:

- it is what the HSM's key-wrap permissions are for: the KEK can be limited to ``CKA_WRAP``/``CKA_UNWRAP``, and
  ``CKA_WRAP_TEMPLATE``-style policies of real HSMs apply to it;
- KW is deterministic and carries its own integrity check: no IV to generate, store or get wrong (some HSMs in FIPS
  mode generate GCM IVs themselves, which bindings handle each their own way), and a wrapped key that was tampered
  with does not unwrap;
- it is what the ``local`` provider does in software (``vault.kek.local``): both store the same 40-byte shape;
- plain KW rather than ``CKM_AES_KEY_WRAP_PAD``: our keys are always 32 bytes, so padding buys nothing, and that
  name means PKCS#7 padding then KW in the standard but RFC 5649 in SoftHSM2 and some HSMs (PKCS#11 3.0 deprecates
  it for ``_KWP`` and ``_PKCS7``): one name, two outputs. KW is implemented alike everywhere.

One logged-in session per token per process, opened lazily, every PKCS#11 call made under one process-wide lock.
python-pkcs11 releases the GIL during each module call and locks a session only across multi-part operations, so it
would let threads call concurrently; but it initialises the module with ``C_Initialize(NULL)``, which tells the
module this application will *not* call it from several threads at once, and PKCS#11 login state belongs to the
application, not the session (a second ``C_Login`` answers ``CKR_USER_ALREADY_LOGGED_IN``, a ``C_Logout`` logs out
every session). Serialising costs nothing that matters: keys are unwrapped once per process and kept
(``vault.keys``). A forked child (Celery's prefork pool) starts the module afresh rather than use its parent's
session.

Any PKCS#11 error on use drops the session and raises ``KekUnavailable`` (naming module, token and label, never the
PIN or any key); the next call finalises and initialises the module again, then logs in afresh. That is how the
vault recovers by itself from an HSM that went away and came back: modules (SoftHSM2 among them, and network HSM
clients after a lost connection) keep a token they lost marked invalid until ``C_Finalize``/``C_Initialize``.
``verify()`` is the start-up check: the module, token, PIN and KEK each fail with a one-line ImproperlyConfigured
saying what to do.
"""

import logging
import os
import threading
from dataclasses import dataclass, field

import pkcs11
from django.core.exceptions import ImproperlyConfigured
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

from vault.kek import KekUnavailable

logger = logging.getLogger(__name__)

ID_PREFIX = "pkcs11:"
MECHANISM = Mechanism.AES_KEY_WRAP
KEY_BYTES = 32
KEK_BITS = 256

# The KEK: kept on the token, readable by nobody, good for wrapping keys only, and fixed once made.
KEK_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
}
KEK_CAPABILITIES = MechanismFlag.WRAP | MechanismFlag.UNWRAP
# A key on its way through the HSM: a session object with no use of its own, which must be extractable (to be wrapped)
# and not sensitive (to be read once unwrapped). A generic secret: the HSM never uses it, only wraps it.
PASSING_KEY_TEMPLATE = {
    Attribute.CLASS: ObjectClass.SECRET_KEY,
    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
}
UNWRAPPED_TEMPLATE = {Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
# Answers that mean "these bytes are no key wrapped under this KEK", whatever the state of the HSM.
NOT_A_WRAPPED_KEY = (
    pkcs11.WrappedKeyInvalid,
    pkcs11.WrappedKeyLenRange,
    pkcs11.EncryptedDataInvalid,
    pkcs11.EncryptedDataLenRange,
)
WRONG_PIN = (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange)


@dataclass
class _Login:
    """The process's logged-in session on one token, and the KEK handles found through it (by label)."""

    session: pkcs11.Session
    keks: dict[str, pkcs11.SecretKey] = field(default_factory=dict)


class _CannotOpen(Exception):
    """No session: ``problem`` says why and what to do, in one line."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


# Every PKCS#11 call of the process happens under _lock (see the module docstring); _logins holds the session of
# each (module, token label), _stale the modules to finalise and initialise again before their next session.
_lock = threading.Lock()
_logins: dict[tuple[str, str], _Login] = {}
_stale: set[str] = set()


def _forget_the_parents_sessions() -> None:
    # A forked child (Celery's prefork pool, after its parent's start-up check logged in) must not use its parent's
    # sessions, nor close them (C_Logout would end the parent's login): PKCS#11 wants the child to initialise the
    # module itself, which the next call does. The lock may have been held by another thread of the parent.
    global _lock
    _lock = threading.Lock()
    _stale.update(module for module, _ in _logins)
    _logins.clear()


os.register_at_fork(after_in_child=_forget_the_parents_sessions)


class Pkcs11Provider:
    name = "pkcs11"

    def __init__(self, *, module: str, token_label: str, pin: str, key_label: str):
        self.module = module
        self.token_label = token_label
        self.key_label = key_label
        self._pin = pin
        self._refused: str | None = None  # why the token refused this PIN, once it has

    def __repr__(self) -> str:  # never the PIN
        return f"<Pkcs11Provider {self.describe()}>"

    # ----------------------------------------------------------------------------------------------- the contract
    def current_kek_id(self) -> str:
        return ID_PREFIX + self.key_label

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        """``key`` wrapped in the HSM under the KEK ``PKCS11_KEY_LABEL``. Raises KekUnavailable."""
        if len(key) != KEY_BYTES:
            raise ValueError(f"a key to wrap is {KEY_BYTES} bytes, not {len(key)}")
        with _lock:
            login, kek = self._kek(self.key_label, doing="wrap")
            try:
                passing = login.session.create_object({**PASSING_KEY_TEMPLATE, Attribute.VALUE: key})
                try:
                    wrapped = kek.wrap_key(passing, mechanism=MECHANISM)
                finally:
                    passing.destroy()
            except pkcs11.PKCS11Error as exc:
                raise self._lost(doing="wrap", label=self.key_label, reason=type(exc).__name__) from None
        return self.current_kek_id(), wrapped

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        """The key ``wrapped`` under the HSM's key named by ``kek_id``. Raises KekUnavailable when the HSM cannot
        answer (or ``kek_id`` is no key of this provider), ValueError when the bytes do not unwrap under that key."""
        if not kek_id.startswith(ID_PREFIX):
            raise KekUnavailable(f"the KEK {kek_id} is not held by the pkcs11 provider (token {self.token_label!r})")
        label = kek_id.removeprefix(ID_PREFIX)
        with _lock:
            login, kek = self._kek(label, doing="unwrap")
            try:
                unwrapped = kek.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.GENERIC_SECRET,
                    bytes(wrapped),
                    mechanism=MECHANISM,
                    template=UNWRAPPED_TEMPLATE,
                    capabilities=MechanismFlag(0),
                )
            except NOT_A_WRAPPED_KEY:
                raise ValueError(f"the wrapped key does not unwrap under {kek_id}") from None
            except pkcs11.PKCS11Error as exc:
                # SoftHSM2 answers a failed integrity check with CKR_GENERAL_ERROR, as an HSM in trouble might:
                # the KEK still answering tells the two apart.
                if self._answers(kek):
                    raise ValueError(f"the wrapped key does not unwrap under {kek_id}") from None
                raise self._lost(doing="unwrap", label=label, reason=type(exc).__name__) from None
            try:
                try:
                    return unwrapped[Attribute.VALUE]
                finally:
                    unwrapped.destroy()
            except pkcs11.PKCS11Error as exc:
                raise self._lost(doing="unwrap", label=label, reason=type(exc).__name__) from None

    def describe(self) -> str:
        return f"pkcs11: KEK {self.key_label!r} on token {self.token_label!r} through {self.module}"

    # ------------------------------------------------------------------------------------------- for operators
    def verify(self) -> None:
        """Open the session now and check the KEK: the start-up check. Raises ImproperlyConfigured, one line
        saying what is wrong and what to do, when the module, the token, the PIN or the KEK is not right."""
        with _lock:
            try:
                login = self._login()
            except _CannotOpen as exc:
                raise ImproperlyConfigured(exc.problem) from None
            try:
                kek = login.session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=self.key_label)
                attributes = kek.get_attributes([Attribute.EXTRACTABLE, Attribute.SENSITIVE, Attribute.UNWRAP])
                mechanisms = login.session.token.slot.get_mechanisms()
            except pkcs11.NoSuchKey:
                raise ImproperlyConfigured(
                    f"PKCS11_KEY_LABEL: token {self.token_label!r} holds no AES key labelled {self.key_label!r}: "
                    f"run `manage.py kek_create` to generate it in the HSM"
                ) from None
            except pkcs11.MultipleObjectsReturned:
                raise ImproperlyConfigured(
                    f"PKCS11_KEY_LABEL: token {self.token_label!r} holds several keys labelled {self.key_label!r}: "
                    f"keep one (or choose another label and run `manage.py kek_create --label LABEL`)"
                ) from None
            except pkcs11.PKCS11Error as exc:
                raise ImproperlyConfigured(
                    f"the HSM failed while checking key {self.key_label!r} on token {self.token_label!r} "
                    f"({self.module}): {type(exc).__name__}"
                ) from None
        if attributes[Attribute.EXTRACTABLE] or not attributes[Attribute.SENSITIVE]:
            raise ImproperlyConfigured(
                f"PKCS11_KEY_LABEL: key {self.key_label!r} on token {self.token_label!r} can leave the HSM "
                f"(extractable or not sensitive): a KEK must not; make one with `manage.py kek_create --label NEW`, "
                f"set PKCS11_KEY_LABEL to it and run `manage.py rotate_kek`"
            )
        if not attributes[Attribute.UNWRAP]:
            raise ImproperlyConfigured(
                f"PKCS11_KEY_LABEL: key {self.key_label!r} on token {self.token_label!r} may not unwrap keys: "
                f"make a KEK with `manage.py kek_create --label NEW` and use that label"
            )
        if MECHANISM not in mechanisms:
            raise ImproperlyConfigured(
                f"PKCS11_MODULE: token {self.token_label!r} ({self.module}) does not offer CKM_AES_KEY_WRAP, "
                f"which the vault wraps its keys with"
            )

    def create_kek(self, label: str | None = None) -> bool:
        """Generate an AES-256 KEK labelled ``label`` (default ``PKCS11_KEY_LABEL``) inside the HSM: a token
        object, sensitive, non-extractable, unmodifiable, for wrapping and unwrapping keys only. Idempotent: a key
        already under that label is left as it is. Returns whether it made one. Raises KekUnavailable."""
        label = label or self.key_label
        with _lock:
            try:
                login = self._login()
            except _CannotOpen as exc:
                raise KekUnavailable(exc.problem) from None
            try:
                try:
                    login.session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=label)
                    return False
                except pkcs11.NoSuchKey:
                    pass
                login.session.generate_key(
                    KeyType.AES,
                    KEK_BITS,
                    label=label,
                    store=True,
                    capabilities=KEK_CAPABILITIES,
                    template=KEK_TEMPLATE,
                )
            except pkcs11.MultipleObjectsReturned:
                return False
            except pkcs11.PKCS11Error as exc:
                raise self._lost(doing="create", label=label, reason=type(exc).__name__) from None
        logger.info("generated KEK %r on token %r in the HSM", label, self.token_label)
        return True

    # -------------------------------------------------------------------------------------- the session (locked)
    def _login(self) -> _Login:
        """The process's session on this token, opened (and logged in) when there is none. Raises _CannotOpen."""
        login = _logins.get((self.module, self.token_label))
        if login is not None:
            return login
        if self._refused:
            # A PIN the token refused is not tried again: the settings cannot change in this process, and an HSM
            # locks its user PIN after a few wrong tries.
            raise _CannotOpen(self._refused)
        try:
            if self.module in _stale:
                # Every session of the module ends with its C_Finalize: forget them all.
                for key in [key for key in _logins if key[0] == self.module]:
                    del _logins[key]
                pkcs11.lib(self.module).reinitialize()
                _stale.discard(self.module)
            token = pkcs11.lib(self.module).get_token(token_label=self.token_label)
            session = token.open(rw=True, user_pin=self._pin)
        except pkcs11.PKCS11Error as exc:
            # A failed C_Login leaves its session open in the module: the next attempt starts the module afresh.
            _stale.add(self.module)
            problem = self._open_problem(exc)
            if isinstance(exc, WRONG_PIN + (pkcs11.PinLocked,)):
                self._refused = problem
            raise _CannotOpen(problem) from None
        login = _logins[(self.module, self.token_label)] = _Login(session)
        logger.info("opened a PKCS#11 session on token %r (%s)", self.token_label, self.module)
        return login

    def _kek(self, label: str, *, doing: str) -> tuple[_Login, pkcs11.SecretKey]:
        """The session and the KEK ``label`` in it, found once per session. Raises KekUnavailable."""
        try:
            login = self._login()
        except _CannotOpen as exc:
            raise self._lost(doing=doing, label=label, reason=exc.problem) from None
        kek = login.keks.get(label)
        if kek is None:
            try:
                kek = login.keks[label] = login.session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=label)
            except pkcs11.NoSuchKey:
                # A token that went away shows no keys before it shows an error: the session goes either way.
                reason = f"no key labelled {label!r} (`manage.py kek_create --label {label}` makes one)"
                raise self._lost(doing=doing, label=label, reason=reason) from None
            except pkcs11.MultipleObjectsReturned:
                raise self._lost(doing=doing, label=label, reason=f"several keys labelled {label!r}") from None
            except pkcs11.PKCS11Error as exc:
                raise self._lost(doing=doing, label=label, reason=type(exc).__name__) from None
        return login, kek

    @staticmethod
    def _answers(kek: pkcs11.SecretKey) -> bool:
        try:
            kek[Attribute.LABEL]
        except pkcs11.PKCS11Error:
            return False
        return True

    def _lost(self, *, doing: str, label: str, reason: str) -> KekUnavailable:
        """Drop this token's session (the next call starts the module afresh) and say why."""
        login = _logins.pop((self.module, self.token_label), None)
        if login is not None:
            try:
                login.session.close()
            except pkcs11.PKCS11Error:
                pass  # as good as closed: the module's C_Finalize ends it
        _stale.add(self.module)
        message = f"the HSM could not {doing} with key {label!r} on token {self.token_label!r} ({self.module})"
        message = f"{message}: {reason}"
        logger.warning("%s; the session is dropped and opened again on the next call", message)
        return KekUnavailable(message)

    def _open_problem(self, exc: Exception) -> str:
        """What is wrong when the session does not open, and what to do: one line, never the PIN."""
        if isinstance(exc, WRONG_PIN):
            return f"PKCS11_PIN is not the user PIN of token {self.token_label!r} ({self.module}): set the right one"
        if isinstance(exc, pkcs11.PinLocked):
            return f"the user PIN of token {self.token_label!r} ({self.module}) is locked: the HSM's officer resets it"
        if isinstance(exc, pkcs11.NoSuchToken):
            return (
                f"PKCS11_TOKEN_LABEL: the module {self.module} has no token labelled {self.token_label!r}: "
                f"initialise it in the HSM, or fix the label"
            )
        if "while loading" in str(exc):
            # python-pkcs11's message names the path and the loader's reason (no such file, wrong ELF class...).
            return f"PKCS11_MODULE: cannot load the PKCS#11 module: {exc}; install the HSM's client or fix the path"
        return f"the HSM did not open a session on token {self.token_label!r} ({self.module}): {type(exc).__name__}"
