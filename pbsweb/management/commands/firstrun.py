"""First-run setup: the secret key, the TLS certificate and the admin account.

Safe to run on every start: it only creates what is missing. The admin's
password is printed once (or taken from PBSWEB_ADMIN_PASSWORD).
"""
import datetime
import ipaddress
import os
import secrets
import socket

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from pbsweb.secretbox import ensure_key

ADMIN_USER = "admin@pbs"


def generate_certificate(cert_path, key_path) -> None:
    """A self-signed certificate for this host, as PBS makes on install."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    hostname = socket.gethostname()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pbsweb self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(hostname), x509.DNSName("localhost"),
           x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Command(BaseCommand):
    help = "Create the secret key, TLS certificate and admin account if missing."

    def handle(self, *args, **options):
        data = settings.DATA_DIR
        data.mkdir(parents=True, exist_ok=True)
        if ensure_key():
            self.stdout.write(f"created secret key {settings.PBSWEB_SECRET_KEY_FILE} (back it up with the data directory)")
        cert, key = data / "proxy.pem", data / "proxy.key"
        if not cert.exists() or not key.exists():
            generate_certificate(cert, key)
            self.stdout.write(f"generated self-signed TLS certificate {cert}")
        users = get_user_model().objects
        if not users.filter(is_superuser=True).exists():
            password = os.environ.get("PBSWEB_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            users.create_superuser(username=ADMIN_USER, password=password, email="")
            if os.environ.get("PBSWEB_ADMIN_PASSWORD"):
                self.stdout.write(f"created user {ADMIN_USER} with the password from PBSWEB_ADMIN_PASSWORD")
            else:
                self.stdout.write(self.style.WARNING(
                    f"created user {ADMIN_USER} (log in as 'admin', realm pbs) with password: {password}\n"
                    "This password is shown only once."))
