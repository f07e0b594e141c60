"""A real HSM for the tests of the ``pkcs11`` KEK provider: a SoftHSM2 token (Debian's ``softhsm2``) initialised in a
temporary directory of the test session's own.

``softhsm`` is session-scoped: one token per pytest process, so each pytest-xdist worker has its own (each has its own
temporary directory), and the processes a test starts (workers, servers) inherit ``SOFTHSM2_CONF`` and reach the same
token. SoftHSM2 reads that variable when the module is initialised (``C_Initialize``): the fixture sets it before any
PKCS#11 call of the session, so a test using the ``pkcs11`` provider must ask for this fixture (or for one using it).
Its PINs are made per run and recorded for the leak scan, like every key the tests use.
"""

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vault.kek.pkcs11 import Pkcs11Provider

SOFTHSM2_MODULE = os.environ.get("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "tokenvault-test"


def record_key_material(*keys: bytes) -> None:
    """Tell the pass's leak scan (scripts/test.sh) to search for ``keys``: the file is outside what it searches."""
    path = os.environ.get("TEST_KEY_MATERIAL_FILE")
    if path:
        with open(path, "a") as material:
            material.writelines(f"{key.hex()}\n" for key in keys)


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    label: str
    pin: str
    tokens: Path  # SoftHSM2's token directory: one folder per token in it
    conf: Path

    def provider(self, key_label: str, *, pin: str | None = None, module: str | None = None) -> Pkcs11Provider:
        return Pkcs11Provider(
            module=module or self.module, token_label=self.label, pin=pin or self.pin, key_label=key_label
        )

    def settings(self, key_label: str) -> dict[str, str]:
        """The settings (and environment variables) choosing the ``pkcs11`` provider on this token."""
        return {
            "VAULT_KEK_PROVIDER": "pkcs11",
            "PKCS11_MODULE": self.module,
            "PKCS11_TOKEN_LABEL": self.label,
            "PKCS11_PIN": self.pin,
            "PKCS11_KEY_LABEL": key_label,
        }

    def script(self, script: str, key_label: str) -> subprocess.CompletedProcess:
        """``script`` (Python, using python-pkcs11) run in a process of its own, as the HSM's own tools would be:
        ``sys.argv[1:4]`` are the module, the token label and ``key_label``; the PIN comes on standard input."""
        return subprocess.run(
            [sys.executable, "-c", script, self.module, self.label, key_label],
            input=self.pin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    @contextlib.contextmanager
    def unplugged(self):
        """The HSM gone for the length of the block, as a network HSM is when its link drops: the token's files
        leave SoftHSM2's token directory, and come back after."""
        away = self.tokens.with_name(f"{self.tokens.name}-unplugged")
        away.mkdir(exist_ok=True)
        folders = [folder for folder in self.tokens.iterdir() if folder.is_dir()]
        for folder in folders:
            folder.rename(away / folder.name)
        try:
            yield
        finally:
            for folder in folders:
                (away / folder.name).rename(folder)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory) -> SoftHsmToken:
    """A fresh SoftHSM2 token, logged into by nobody yet, holding no key."""
    if not Path(SOFTHSM2_MODULE).is_file() or not shutil.which("softhsm2-util"):
        pytest.fail(
            f"SoftHSM2 is not installed ({SOFTHSM2_MODULE}, softhsm2-util): the pkcs11 provider's tests need it "
            f"(Debian's softhsm2 package: `make test` installs it when run as root, or 'sudo apt-get install softhsm2')"
        )
    home = tmp_path_factory.mktemp("softhsm")
    tokens = home / "tokens"
    tokens.mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin, so_pin = secrets.token_hex(12), secrets.token_hex(12)
    record_key_material(pin.encode(), so_pin.encode())
    init = subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL, "--pin", pin, "--so-pin", so_pin],
        capture_output=True,
        text=True,
    )
    if init.returncode:
        pytest.fail(f"softhsm2-util --init-token failed: {init.stderr.replace(pin, '***').replace(so_pin, '***')}")
    return SoftHsmToken(module=SOFTHSM2_MODULE, label=TOKEN_LABEL, pin=pin, tokens=tokens, conf=conf)
