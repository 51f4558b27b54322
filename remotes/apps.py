from django.apps import AppConfig


class RemotesConfig(AppConfig):
    name = "remotes"

    def ready(self):
        # What the ground floor learns of this app (docs/DESIGN.md, "The registry").
        from pbsweb.registry import registry
        from remotes.models import Remote

        registry.task_type("remotetest", "Remote {id} Test Connection")
        registry.later(register)

        def no_remote_hint(request):
            if Remote.objects.exists():
                return None
            return {"title": "Nothing is off-site yet:", "link": "/remotes/", "link_text": "Add a remote",
                    "text": "(an S3 bucket: Backblaze B2, Wasabi, Cloudflare R2, MinIO, AWS) to replicate "
                            "your datastores to."}
        registry.hint(no_remote_hint, order=20)


def register():
    """Task functions and errors, for the worker (pbsweb/registry.py, docs/DESIGN.md §1.1)."""
    from pbsweb.registry import registry
    from remotes import tasks  # noqa: F401  (registers the task functions)
    from remotes.engine.config import ValidationError
    from remotes.engine.limits import CapReached

    registry.user_error(ValidationError, CapReached)
