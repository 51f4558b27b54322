from django.conf import settings

from pbsweb.registry import registry


def navigation(request):
    """The navigation tree's entries (each app registers what it adds, e.g. the datastores)."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    context = {"node_name": settings.NODE_NAME}
    for source in registry.navigation:
        context.update(source(request))
    return context
