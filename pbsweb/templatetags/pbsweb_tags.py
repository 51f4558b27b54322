"""Filters every template may use (registered as builtins in settings)."""
from datetime import timedelta

from django import template

from pbsweb.models import task_url as _task_url

register = template.Library()


@register.filter
def duration(value) -> str:
    """A timedelta or seconds as PBS shows durations: 45s, 3m 05s, 2h 04m."""
    if value is None or value == "":
        return ""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else float(value))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


@register.filter
def bytes_iec(value) -> str:
    """1536 -> '1.50 KiB' (PBS shows IEC units)."""
    if value is None or value == "":
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return ""


@register.filter
def task_url(upid) -> str:
    """`{{ upid|task_url }}`: the task viewer's URL for a UPID string."""
    return _task_url(str(upid)) if upid else ""
