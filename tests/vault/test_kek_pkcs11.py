"""The ``pkcs11`` KEK provider against a real HSM: a SoftHSM2 token the test session initialises itself
(``tests/vault/conftest.py``). The KEK is made in the HSM and never leaves it; keys are wrapped and unwrapped there;
the start-up check names what is wrong; the HSM going away mid-run gives KekUnavailable, and its return, service
again without a restart.

The ring's keys here are random 32-byte keys made by each test, recorded for the leak scan; the KEKs are the HSM's.
"""

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from tests.conftest import ROOT
from tests.vault.conftest import record_key_material
from vault.crypto import check_value
from vault.kek import KekUnavailable
from vault.kek.local import kek_id_of, keks_from
from vault.kek.pkcs11 import Pkcs11Provider


def new_key() -> bytes:
    key = os.urandom(32)
    record_key_material(key)
    return key


def new_label() -> str:
    return f"kek-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kek(softhsm) -> Pkcs11Provider:
    """A provider whose KEK, of its own label, was just made in the HSM."""
    provider = softhsm.provider(new_label())
    assert provider.create_kek() is True
    return provider


def inspect_in_another_process(softhsm, label: str) -> dict:
    """The KEK's attributes as an operator logged into the token from another process reads them."""
    script = """
import json, sys
import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass
module, token_label, label = sys.argv[1:4]
session = pkcs11.lib(module).get_token(token_label=token_label).open(user_pin=sys.stdin.read())
kek = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=label)
names = ["TOKEN", "SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE", "ALWAYS_SENSITIVE", "LOCAL", "MODIFIABLE",
         "WRAP", "UNWRAP", "ENCRYPT", "DECRYPT", "SIGN", "VERIFY", "DERIVE", "VALUE_LEN"]
found = {name: kek[getattr(Attribute, name)] for name in names}
try:
    kek[Attribute.VALUE]
    found["VALUE"] = "readable"
except pkcs11.AttributeSensitive:
    found["VALUE"] = "sensitive"
print(json.dumps(found))
"""
    result = softhsm.script(script, label)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_up(softhsm, **environment) -> subprocess.CompletedProcess:
    """``manage.py check`` with the pkcs11 provider on the test token: a process of the product starting, which
    checks its KEK provider (``vault.apps``) with its first login. ``environment`` changes the settings."""
    env = {**os.environ, **softhsm.settings("absent"), **environment}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def stopped_saying(result: subprocess.CompletedProcess) -> str:
    """The one line naming what is wrong, as the start-up check printed it (after its check's id)."""
    assert result.returncode == 1, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "(vault.E002)" in line]
    return line.split("(vault.E002) ", 1)[1]


# ------------------------------------------------------------------------------------------------------------
# The KEK
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("3.6.1.2")
def test_create_kek_makes_a_key_that_never_leaves_the_hsm_and_only_wraps(softhsm, kek):
    attributes = inspect_in_another_process(softhsm, kek.key_label)

    assert attributes == {
        "TOKEN": True,  # kept by the HSM, not the session
        "SENSITIVE": True,
        "EXTRACTABLE": False,
        "NEVER_EXTRACTABLE": True,
        "ALWAYS_SENSITIVE": True,
        "LOCAL": True,  # generated inside the HSM, never imported
        "MODIFIABLE": False,
        "WRAP": True,
        "UNWRAP": True,
        "ENCRYPT": False,
        "DECRYPT": False,
        "SIGN": False,
        "VERIFY": False,
        "DERIVE": False,
        "VALUE_LEN": 32,
        "VALUE": "sensitive",
    }


def test_create_kek_leaves_an_existing_key_alone(softhsm, kek):
    key = new_key()
    _, wrapped = kek.wrap(key)

    assert kek.create_kek() is False
    assert softhsm.provider(kek.key_label).create_kek() is False
    assert kek.unwrap(kek.current_kek_id(), wrapped) == key


def test_verify_passes_a_token_with_its_kek(kek):
    kek.verify()


# ------------------------------------------------------------------------------------------------------------
# Wrapping
# ------------------------------------------------------------------------------------------------------------
def test_a_key_wrapped_in_the_hsm_unwraps_to_itself_and_is_not_in_its_wrapped_bytes(kek):
    key = new_key()

    kek_id, wrapped = kek.wrap(key)

    assert kek_id == f"pkcs11:{kek.key_label}" == kek.current_kek_id()
    assert len(wrapped) == 40  # RFC 3394: the key and an 8-byte integrity block
    for form in (key, key.hex().encode(), key.hex().upper().encode()):
        assert form not in wrapped
    assert kek.unwrap(kek_id, wrapped) == key
    assert kek.wrap(new_key())[1] != wrapped


@pytest.mark.pci("3.7.7")
def test_a_tampered_wrapped_key_does_not_unwrap_and_the_hsm_keeps_serving(kek):
    key = new_key()
    kek_id, wrapped = kek.wrap(key)
    tampered = bytes([wrapped[0] ^ 1]) + wrapped[1:]

    with pytest.raises(ValueError, match="does not unwrap"):
        kek.unwrap(kek_id, tampered)
    assert kek.unwrap(kek_id, wrapped) == key


def test_a_key_wrapped_under_an_older_label_still_unwraps_after_the_label_changed(softhsm, kek):
    """How rotate_kek moves from label A to label B: while A exists, keys under it unwrap, and re-wrap under B."""
    key = new_key()
    old_id, wrapped = kek.wrap(key)
    newer = softhsm.provider(new_label())
    newer.create_kek()

    assert newer.unwrap(old_id, wrapped) == key
    new_id, rewrapped = newer.wrap(key)
    assert new_id == f"pkcs11:{newer.key_label}" != old_id
    assert newer.unwrap(new_id, rewrapped) == key
    with pytest.raises(ValueError):
        newer.unwrap(new_id, wrapped)  # the old bytes under the new key: not a key wrapped by it


def test_a_kek_the_hsm_does_not_hold_is_unavailable_not_a_failure_of_the_data(softhsm, kek):
    _, wrapped = kek.wrap(new_key())

    with pytest.raises(KekUnavailable, match="no key labelled 'never-made'.*kek_create"):
        kek.unwrap("pkcs11:never-made", wrapped)
    with pytest.raises(KekUnavailable, match="not held by the pkcs11 provider"):
        kek.unwrap("local:0123456789abcdef", wrapped)


def test_only_a_32_byte_key_is_wrapped(kek):
    with pytest.raises(ValueError, match="32 bytes"):
        kek.wrap(b"short")


# ------------------------------------------------------------------------------------------------------------
# The start-up check
# ------------------------------------------------------------------------------------------------------------
def test_a_wrong_pin_stops_start_up_with_a_clear_message_that_does_not_show_the_pin(softhsm, kek):
    wrong_pin = f"wrong-{uuid.uuid4().hex[:12]}"

    result = start_up(softhsm, PKCS11_PIN=wrong_pin, PKCS11_KEY_LABEL=kek.key_label)

    assert stopped_saying(result) == (
        f"PKCS11_PIN is not the user PIN of token '{softhsm.label}' ({softhsm.module}): set the right one"
    )
    assert wrong_pin not in result.stdout + result.stderr
    assert softhsm.pin not in result.stdout + result.stderr


def test_a_missing_kek_stops_start_up_until_the_operator_makes_it_with_kek_create(softhsm):
    label = new_label()

    refused = start_up(softhsm, PKCS11_KEY_LABEL=label)
    made = subprocess.run(
        [sys.executable, "manage.py", "kek_create"],
        cwd=ROOT,
        env={**os.environ, **softhsm.settings(label)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    started = start_up(softhsm, PKCS11_KEY_LABEL=label)

    assert stopped_saying(refused) == (
        f"PKCS11_KEY_LABEL: token '{softhsm.label}' holds no AES key labelled '{label}': run "
        f"`manage.py kek_create` to generate it in the HSM"
    )
    assert made.returncode == 0, made.stderr
    assert f"Generated the KEK '{label}' on token '{softhsm.label}'" in made.stdout
    assert started.returncode == 0, started.stderr
    assert "System check identified no issues" in started.stdout


def test_a_missing_hsm_module_stops_start_up_naming_it(softhsm):
    result = start_up(softhsm, PKCS11_MODULE="/opt/no-such-hsm/libcryptoki.so")

    said = stopped_saying(result)
    assert said.startswith("PKCS11_MODULE: cannot load the PKCS#11 module")
    assert "/opt/no-such-hsm/libcryptoki.so" in said and said.endswith("install the HSM's client or fix the path")


def test_a_missing_module_fails_verify_with_a_clear_message(softhsm):
    provider = softhsm.provider("any", module="/opt/no-such-hsm/libcryptoki.so")

    with pytest.raises(ImproperlyConfigured) as refused:
        provider.verify()

    message = str(refused.value)
    assert message.startswith("PKCS11_MODULE: cannot load the PKCS#11 module")
    assert "/opt/no-such-hsm/libcryptoki.so" in message and "No such file" in message
    assert "\n" not in message
    with pytest.raises(KekUnavailable, match="PKCS11_MODULE"):
        provider.wrap(new_key())


def test_a_missing_token_fails_verify_naming_the_label(softhsm):
    provider = Pkcs11Provider(module=softhsm.module, token_label="no-such-token", pin=softhsm.pin, key_label="k")

    with pytest.raises(ImproperlyConfigured, match="PKCS11_TOKEN_LABEL: .* no token labelled 'no-such-token'"):
        provider.verify()


@pytest.mark.pci("3.7.2")
def test_verify_refuses_a_kek_that_can_leave_the_hsm(softhsm):
    """An operator's mistake: an extractable key imported under the KEK's label."""
    label = new_label()
    script = """
import sys
import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag
module, token_label, label = sys.argv[1:4]
with pkcs11.lib(module).get_token(token_label=token_label).open(rw=True, user_pin=sys.stdin.read()) as session:
    session.generate_key(
        KeyType.AES, 256, label=label, store=True, capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
        template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True},
    )
"""
    made = softhsm.script(script, label)
    assert made.returncode == 0, made.stderr

    with pytest.raises(ImproperlyConfigured, match=f"key '{label}' .* can leave the HSM"):
        softhsm.provider(label).verify()


# ------------------------------------------------------------------------------------------------------------
# The HSM going away, and coming back
# ------------------------------------------------------------------------------------------------------------
def test_the_hsm_going_away_mid_run_makes_the_kek_unavailable_and_its_return_serves_again(softhsm, kek, caplog):
    key = new_key()
    kek_id, wrapped = kek.wrap(key)
    assert kek.unwrap(kek_id, wrapped) == key  # the session is open and the KEK found

    with softhsm.unplugged():
        with pytest.raises(KekUnavailable) as unwrapping:
            kek.unwrap(kek_id, wrapped)
        with pytest.raises(KekUnavailable) as wrapping:
            kek.wrap(new_key())  # a new session is tried, and fails as long as the token is away
        with pytest.raises(KekUnavailable):
            kek.unwrap(kek_id, wrapped)

    # Back, in the same process: the next call logs in again.
    assert kek.unwrap(kek_id, wrapped) == key
    newer_id, newer = kek.wrap(key)
    assert kek.unwrap(newer_id, newer) == key
    for failure in (unwrapping.value, wrapping.value):
        assert f"token '{softhsm.label}'" in str(failure) and kek.key_label in str(failure)
    assert softhsm.pin not in caplog.text + str(unwrapping.value) + str(wrapping.value)
    assert key.hex() not in caplog.text


def test_a_forked_child_logs_in_on_its_own_and_leaves_its_parent_logged_in(kek):
    """Celery's prefork pool forks its children after the parent's start-up check has logged in."""
    key = new_key()
    kek_id, wrapped = kek.wrap(key)  # the parent's session is open

    child = os.fork()
    if child == 0:
        try:
            served = kek.unwrap(kek_id, wrapped) == key and kek.unwrap(*kek.wrap(key)) == key
        except BaseException:  # noqa: BLE001 - the child's only answer is its exit status
            served = False
        os._exit(0 if served else 1)
    _, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert kek.unwrap(kek_id, wrapped) == key


# ------------------------------------------------------------------------------------------------------------
# manage.py kek_create
# ------------------------------------------------------------------------------------------------------------
def kek_create(*args) -> str:
    out = StringIO()
    call_command("kek_create", *args, stdout=out)
    return out.getvalue()


def test_kek_create_makes_the_configured_kek_in_the_hsm_once(softhsm, settings):
    label = new_label()
    for name, value in softhsm.settings(label).items():
        setattr(settings, name, value)

    first, second = kek_create(), kek_create()

    where = f"on token '{softhsm.label}' ({softhsm.module})"
    assert first.strip() == (
        f"Generated the KEK '{label}' {where}: AES-256, made in the HSM, non-extractable, for wrapping keys"
    )
    assert second.strip() == f"The KEK '{label}' is already {where}: nothing to do"
    softhsm.provider(label).verify()
    assert softhsm.pin not in first + second


def test_kek_create_with_another_label_says_how_to_move_to_it(softhsm, kek, settings):
    for name, value in softhsm.settings(kek.key_label).items():
        setattr(settings, name, value)
    label = new_label()

    out = kek_create("--label", label)

    assert f"Generated the KEK '{label}'" in out
    assert f"set PKCS11_KEY_LABEL={label} (keeping the key '{kek.key_label}' in the HSM)" in out
    assert "`manage.py rotate_kek`" in out
    softhsm.provider(label).verify()


def test_kek_create_says_why_when_the_hsm_refuses(softhsm, settings):
    for name, value in {**softhsm.settings("any"), "PKCS11_TOKEN_LABEL": "no-such-token"}.items():
        setattr(settings, name, value)

    with pytest.raises(CommandError, match="PKCS11_TOKEN_LABEL: .* no token labelled 'no-such-token'"):
        kek_create()


def test_kek_create_prints_the_components_of_a_local_kek_for_its_custodians(settings):
    settings.VAULT_KEK_PROVIDER = "local"

    out = kek_create("--components", "3")

    components = re.findall(r"^component (\d) of 3: (\S+)  \(check value ([0-9a-f]{16})\)$", out, re.MULTILINE)
    assert [n for n, _, _ in components] == ["1", "2", "3"]
    parts = [base64.b64decode(part) for _, part, _ in components]
    record_key_material(*parts)
    assert [check for _, _, check in components] == [check_value(part) for part in parts]
    kek, _ = keks_from(components=",".join(part for _, part, _ in components))
    assert f"makes the KEK {kek_id_of(kek)}" in out
    record_key_material(kek)


def test_kek_create_on_the_local_provider_says_how_to_set_the_kek(settings):
    settings.VAULT_KEK_PROVIDER = "local"

    out = kek_create()

    assert "VAULT_KEK (base64 of 32 random bytes)" in out and "`manage.py kek_create --components 3`" in out
