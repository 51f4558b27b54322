from django.apps import AppConfig


class DatastoresConfig(AppConfig):
    name = "datastores"

    def ready(self):
        # What the ground floor learns of this app (docs/DESIGN.md, "The registry").
        from pbsweb.registry import registry

        for worker_type, description in [
            ("backup", "Backup {id}"), ("reader", "Restore {id}"), ("prune", "Prune {id}"),
            ("prunejob", "Prune Job {id}"), ("garbage_collection", "Datastore {id} Garbage Collect"),
            ("verify", "Verify {id}"), ("verificationjob", "Verify Job {id}"), ("catalog", "Catalog rebuild {id}"),
        ]:
            registry.task_type(worker_type, description)
        registry.later(register)


def register():
    """Task functions, errors, cards and ticks: they import the engine, which a command that
    lists a table does without (pbsweb/registry.py, docs/DESIGN.md §1.1)."""
    from datastores import dashboard, tasks  # noqa: F401  (tasks: registers the task functions)
    from datastores.engine.errors import DatastoreError
    from pbsweb.registry import registry

    registry.user_error(DatastoreError)
    dashboard.register()
