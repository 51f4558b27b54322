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
    from pbsweb.access import has_privilege
    context["nav_datastores"] = [  # only the stores this user may see, as PBS's navigation tree
        name for name in model.objects.order_by("name").values_list("name", flat=True)
        if has_privilege(request.user, "Datastore.Audit", f"/datastore/{name}")
        or has_privilege(request.user, "Datastore.Backup", f"/datastore/{name}")]
    return context
