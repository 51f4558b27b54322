from django.apps import apps
from django.conf import settings


def navigation(request):
    """The datastores for the left navigation tree."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    context = {"node_name": settings.NODE_NAME, "nav_datastores": []}
    try:
        model = apps.get_model("datastores", "Datastore")
    except LookupError:
        return context
    context["nav_datastores"] = list(model.objects.order_by("name").values_list("name", flat=True))
    return context
