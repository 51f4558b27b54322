from datetime import datetime, timezone

from django import template
from django.utils import timezone as djtz

register = template.Library()


@register.filter
def epoch(value) -> str:
    """Epoch seconds as local 'YYYY-MM-DD HH:MM:SS'."""
    if value in (None, ""):
        return ""
    dt = datetime.fromtimestamp(int(value), tz=timezone.utc).astimezone(djtz.get_current_timezone())
    return dt.strftime("%Y-%m-%d %H:%M:%S")


@register.filter
def strip_idx(name: str) -> str:
    """'root.tar.didx' -> 'root.tar'."""
    for suffix in (".didx", ".fidx"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@register.filter
def lookup(d, key):
    return d.get(key) if isinstance(d, dict) else None
