"""Response headers that keep injected markup inert, and plain-text error answers.

No response echoes request input as HTML: error bodies are `plain_error` (text/plain) or come
from an escaping template. The Content-Security-Policy allows scripts and styles only from this
server's own static files, so even markup that slipped through would run nothing.
"""
from django.conf import settings
from django.http import HttpResponse


def plain_error(message: str, status: int = 400) -> HttpResponse:
    """An error answer for a page request: text/plain, so the browser never parses it as HTML."""
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class SecurityHeadersMiddleware:
    """Content-Security-Policy on every response (Django 5.2 has none built in)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
