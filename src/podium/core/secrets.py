"""Encryption at rest for provider credentials: Fernet with a key derived from the server secret."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from podium.core.errors import PodiumError

PREFIX = "enc:v1:"


class SecretBox:
    """Encrypts and decrypts short secrets; ciphertexts carry a version prefix."""

    def __init__(self, server_secret: str):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"podium", info=b"provider-secrets").derive(
            server_secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, plaintext: str) -> str:
        """The stored form of a secret."""
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The secret back; a changed server secret makes old ciphertexts unreadable."""
        if not stored.startswith(PREFIX):
            raise PodiumError("stored secret is not in Podium's encrypted format")
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise PodiumError(
                "cannot decrypt a stored provider secret: the server's secret_key changed since it was saved"
            ) from None
