"""The ``local`` KEK provider: AES key wrap under the KEK of VAULT_KEK, or of VAULT_KEK_COMPONENTS XORed together
(split knowledge), older KEKs in VAULT_KEK_PREVIOUS for unwrapping only; and the factory choosing the provider.

Every key here is generated when the test runs; a malformed one is refused naming its setting, never its value.
"""

import base64
import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.secrets import new_key
from vault.crypto import check_value
from vault.kek import KekUnavailable, kek_provider
from vault.kek.local import LocalProvider, assembled, keks_from


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def xor(*parts: bytes) -> bytes:
    result = bytes(32)
    for part in parts:
        result = bytes(a ^ b for a, b in zip(result, part, strict=True))
    return result


@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.7.2")
def test_a_key_wrapped_under_the_kek_unwraps_to_the_same_key_and_holds_nothing_of_it_in_clear():
    kek, dek = os.urandom(32), os.urandom(32)
    provider = LocalProvider(kek)

    kek_id, wrapped = provider.wrap(dek)

    assert kek_id == f"local:{check_value(kek)}" == provider.current_kek_id()
    assert len(wrapped) == 40 and dek not in wrapped and dek.hex() not in wrapped.hex()
    assert provider.unwrap(kek_id, wrapped) == dek
    assert provider.wrap(dek) == (kek_id, wrapped)  # AES key wrap: no nonce, the same key wraps the same way


@pytest.mark.pci("3.7.7")
def test_a_wrapped_key_that_does_not_authenticate_under_the_kek_is_refused_not_unwrapped_to_garbage():
    provider = LocalProvider(os.urandom(32))
    kek_id, wrapped = provider.wrap(os.urandom(32))
    tampered = bytes([wrapped[0] ^ 1]) + wrapped[1:]

    with pytest.raises(ValueError, match=f"does not unwrap under {kek_id}"):
        provider.unwrap(kek_id, tampered)
    # Named as wrapped under another KEK this process holds (a row edited by hand): refused as well.
    current, older = os.urandom(32), os.urandom(32)
    both = LocalProvider(current, [older])
    _, under_the_older = LocalProvider(older).wrap(os.urandom(32))
    with pytest.raises(ValueError):
        both.unwrap(both.current_kek_id(), under_the_older)


def test_a_key_wrapped_under_a_kek_this_process_does_not_hold_is_unavailable_naming_the_kek():
    old = LocalProvider(os.urandom(32))
    kek_id, wrapped = old.wrap(os.urandom(32))

    with pytest.raises(KekUnavailable, match=f"the KEK {kek_id} is not held by this process"):
        LocalProvider(os.urandom(32)).unwrap(kek_id, wrapped)


def test_previous_keks_unwrap_what_they_wrapped_and_new_wraps_go_under_the_current_one():
    old_kek, new_kek, dek = os.urandom(32), os.urandom(32), os.urandom(32)
    old_id, wrapped = LocalProvider(old_kek).wrap(dek)

    provider = LocalProvider(new_kek, [old_kek])

    assert provider.unwrap(old_id, wrapped) == dek
    assert provider.wrap(dek)[0] == f"local:{check_value(new_kek)}" != old_id


@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.6.1.2")
@pytest.mark.pci("3.7.6")
def test_the_kek_of_components_is_their_xor_and_no_fewer_of_them_make_it():
    components = [os.urandom(32) for _ in range(3)]

    current, previous = keks_from(components=",".join(b64(part) for part in components))

    assert current == xor(*components) and previous == []
    assert all(current != xor(*components[:2]) and current != part for part in components)


# Each made of two random keys a and b: the settings given, and what the refusal says.
REFUSED_KEKS = {
    "one-component": (lambda a, b: {"components": b64(a)}, "at least 2 components"),
    "one-and-a-comma": (lambda a, b: {"components": f"{b64(a)},"}, "at least 2 components"),
    "repeated": (lambda a, b: {"components": f"{b64(a)},{b64(a)}"}, "repeats a component"),
    "cancelling": (lambda a, b: {"components": f"{b64(a)},{b64(b)},{b64(b)},{b64(a)}"}, "repeats a component"),
    "short": (lambda a, b: {"components": f"{b64(a)},{b64(a[:16])}"}, "component 2 must be 32 bytes"),
    "both": (lambda a, b: {"kek": b64(a), "components": f"{b64(a)},{b64(b)}"}, "not both"),
    "none": (lambda a, b: {}, "No key encryption key"),
    "not-base64": (lambda a, b: {"kek": "not base64!"}, "VAULT_KEK is not valid base64"),
    "previous-is-current": (lambda a, b: {"kek": b64(a), "previous": b64(a)}, "holds the current KEK"),
}


@pytest.mark.pci("3.6.1")
@pytest.mark.parametrize("kind", REFUSED_KEKS)
def test_a_kek_that_is_no_split_knowledge_or_malformed_is_refused_naming_the_setting_not_the_value(kind):
    make, complaint = REFUSED_KEKS[kind]
    a, b = os.urandom(32), os.urandom(32)
    given = make(a, b)

    with pytest.raises(ImproperlyConfigured, match=complaint) as refused:
        keks_from(**given)

    for key in (a, b):
        assert b64(key) not in str(refused.value) and key.hex() not in str(refused.value)


@pytest.mark.pci("3.7.6")
def test_components_that_cancel_each_other_out_are_refused():
    a, b = os.urandom(32), os.urandom(32)
    with pytest.raises(ImproperlyConfigured, match="cancel each other out"):
        assembled([b64(a), b64(b), b64(xor(a, b))], "VAULT_KEK_COMPONENTS")  # XOR to zero


def test_a_previous_kek_made_of_components_is_given_as_its_components_joined_by_colons():
    old_parts, current = [os.urandom(32), os.urandom(32)], os.urandom(32)

    _, previous = keks_from(kek=b64(current), previous=":".join(b64(part) for part in old_parts))

    assert previous == [xor(*old_parts)]


def test_the_provider_describes_itself_and_checks_itself_without_a_word_of_its_keys():
    kek, old = os.urandom(32), os.urandom(32)
    provider = LocalProvider(kek, [old], source="VAULT_KEK_COMPONENTS")

    provider.verify()

    described = provider.describe() + repr(provider)
    assert provider.current_kek_id() in described and "VAULT_KEK_COMPONENTS" in described and "1 previous" in described
    for key in (kek, old):
        assert b64(key) not in described and key.hex() not in described


# ------------------------------------------------------------------------------------------------------------
# The factory: VAULT_KEK_PROVIDER
# ------------------------------------------------------------------------------------------------------------
def test_the_provider_is_made_once_from_the_settings_and_afresh_when_they_change(settings):
    first = kek_provider()
    assert first is kek_provider() and first.name == "local"
    assert first.current_kek_id() == f"local:{check_value(base64.b64decode(settings.VAULT_KEK))}"

    parts = [new_key(), new_key()]
    settings.VAULT_KEK, settings.VAULT_KEK_COMPONENTS = "", ",".join(parts)

    second = kek_provider()
    assert second is not first
    assert second.current_kek_id() == f"local:{check_value(xor(*(base64.b64decode(p) for p in parts)))}"


def test_an_unknown_provider_is_refused_by_name(settings):
    settings.VAULT_KEK_PROVIDER = "vault-in-the-cloud"
    with pytest.raises(ImproperlyConfigured, match="VAULT_KEK_PROVIDER must be 'local', 'pkcs11'"):
        kek_provider()


class KeyManagerOfTheirOwn(LocalProvider):
    """Another key manager, as an installation would plug one in: a class of the contract, named by its path."""

    name = "their-own"

    def __init__(self):
        super().__init__(bytes(range(32)))


def test_another_key_manager_is_named_by_the_dotted_path_of_its_class(settings):
    settings.VAULT_KEK_PROVIDER = f"{__name__}.KeyManagerOfTheirOwn"

    provider = kek_provider()

    assert isinstance(provider, KeyManagerOfTheirOwn)
    dek = os.urandom(32)
    assert provider.unwrap(*provider.wrap(dek)) == dek
