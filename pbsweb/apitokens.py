"""API tokens: `Authorization: PBSAPIToken=user@realm!name:secret`, as PBS."""
import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from pbsweb.models import AclEntry, ApiToken

HEADER_PREFIX = "PBSAPIToken="


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(user, name: str, comment: str = "", role: str | None = None, path: str = "/") -> tuple[ApiToken, str]:
    """Returns the token and its secret, which is shown once and stored only hashed.

    A token holds only what its own ACL entries grant (and its user holds too, as PBS's
    privilege separation): `role` on `path` is its first entry; without one it holds nothing."""
    secret = secrets.token_urlsafe(24)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name, secret_hash=_hash(secret), comment=comment)
        if role:
            AclEntry.objects.create(token=token, path=path, role=role)
    return token, secret


def authenticate_token(request):
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.startswith(HEADER_PREFIX):
        return None
    tokenid, _, secret = header[len(HEADER_PREFIX):].partition(":")
    username, _, name = tokenid.partition("!")
    if not (username and name and secret):
        return None
    token = ApiToken.objects.select_related("user").filter(
        user__username=username, name=name, enabled=True).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(secret)):
        return None
    if token.expire and token.expire < timezone.now():
        return None
    if not token.user.is_active:
        return None
    request._api_token = token
    return token.user


