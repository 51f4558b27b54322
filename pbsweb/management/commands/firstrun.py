"""First-run setup: the secret key, the TLS certificate, the allowed host names and the admin account.

Safe to run on every start: it only creates what is missing, and sets the data directory's
modes (0700, the database and keys 0600). The admin's password is printed once (or taken from
PBSWEB_ADMIN_PASSWORD).
"""
import datetime
import ipaddress
import json
import os
import secrets
import socket

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from pbsweb.paths import secure_data_dir
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


def host_names_and_addresses() -> list[str]:
    """This machine's names and addresses, as a browser would put them in the Host header."""
    names = {socket.gethostname(), socket.getfqdn()}
    addresses = set()
    for name in list(names):
        try:
            addresses.update(info[4][0] for info in socket.getaddrinfo(name, None))
        except OSError:
            pass
    # the address of the default route (connecting a UDP socket sends nothing)
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                addresses.add(s.getsockname()[0])
        except OSError:
            pass
    hosts = sorted(n for n in names if n)
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_loopback and not ip.is_link_local:
            hosts.append(f"[{ip}]" if ip.version == 6 else str(ip))
    return hosts


def save_allowed_hosts(path) -> list[str] | None:
    """Write the allowed host names to the settings file unless it already has them."""
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    if "allowed_hosts" in saved:
        return None
    saved["allowed_hosts"] = host_names_and_addresses()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(saved, f, indent=2)
        f.write("\n")
    return saved["allowed_hosts"]


class Command(BaseCommand):
    help = "Create the secret key, TLS certificate and admin account if missing."

    def handle(self, *args, **options):
        data = settings.DATA_DIR
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        if ensure_key():
            self.stdout.write(f"created secret key {settings.PBSWEB_SECRET_KEY_FILE} (back it up with the data directory)")
        cert, key = data / "proxy.pem", data / "proxy.key"
        if not cert.exists() or not key.exists():
            generate_certificate(cert, key)
            self.stdout.write(f"generated self-signed TLS certificate {cert}")
        hosts = save_allowed_hosts(settings.SETTINGS_FILE)
        if hosts is not None:
            self.stdout.write(f"the console answers to {', '.join(hosts + settings.LOOPBACK_HOSTS)} "
                              f"(edit {settings.SETTINGS_FILE} or set PBSWEB_ALLOWED_HOSTS for other names)")
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
        secure_data_dir()
