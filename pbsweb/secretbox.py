"""Secrets at rest (S3 secret keys, passphrases) are Fernet-encrypted with a key
kept in the data directory, mode 0600. Without that key file nothing decrypts:
a missing key is a clear error, never a silent fallback to plaintext."""
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def key_path():
    return settings.PBSWEB_SECRET_KEY_FILE


def ensure_key() -> bool:
    """Create the key file if there is none (first run). Returns True if it was created."""
    path = key_path()
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key())
        f.flush()
        os.fsync(f.fileno())
    return True


def _fernet() -> Fernet:
    path = key_path()
    try:
        mode = path.stat().st_mode & 0o777
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise ImproperlyConfigured(
            f"secret key file {path} is missing: stored secrets cannot be decrypted. "
            "Restore it from your backup of the data directory, or run `python manage.py firstrun` "
            "on a new install.") from None
    if mode & 0o077:
        raise ImproperlyConfigured(f"secret key file {path} must be mode 0600, not {mode:04o}")
    return Fernet(key)


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            f"a stored secret does not decrypt with {key_path()}: the key file was replaced") from None
