"""Encryption at rest for provider credentials: Fernet with a key derived from the server secret."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from podium.core.errors import PodiumError

PREFIX = "enc:v1:"


def _fernet(server_secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"podium", info=b"provider-secrets").derive(
        server_secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    """Encrypts and decrypts short secrets; ciphertexts carry a version prefix. Secrets saved under an
    earlier server secret (`previous`) still decrypt, and `rotate` re-encrypts them under the current one
    (cryptography's MultiFernet)."""

    def __init__(self, server_secret: str, previous: Sequence[str] = ()):
        self._fernet = MultiFernet([_fernet(server_secret), *(_fernet(p) for p in previous)])

    def encrypt(self, plaintext: str) -> str:
        """The stored form of a secret."""
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The secret back; a changed server secret makes old ciphertexts unreadable unless it is among
        the previous ones."""
        if not stored.startswith(PREFIX):
            raise PodiumError("stored secret is not in Podium's encrypted format")
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise PodiumError(
                "cannot decrypt a stored provider secret: the server's secret_key changed since it was saved"
                " (give the old one in secret_key_previous to read and re-encrypt it)"
            ) from None

    def rotate(self, stored: str) -> str:
        """The stored form under the current server secret (unchanged content)."""
        if not stored.startswith(PREFIX):
            raise PodiumError("stored secret is not in Podium's encrypted format")
        try:
            return PREFIX + self._fernet.rotate(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise PodiumError("cannot re-encrypt a stored provider secret: no known secret_key decrypts it") from None
