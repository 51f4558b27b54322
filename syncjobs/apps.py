from django.apps import AppConfig


class SyncJobsConfig(AppConfig):
    name = "syncjobs"

    def ready(self):
        # What the ground floor learns of this app (docs/DESIGN.md, "The registry").
        from pbsweb.registry import registry

        registry.task_type("syncjob", "Sync Job {id}")
        registry.task_type("drill", "Restore drill {id}")
        registry.task_type("s3-refresh", "Refresh inventory {id}")
        registry.task_type("s3-recover", "Recover bucket {id}")
        registry.later(register)
        # `remote content` / `remote restore` / `remote recover`: subcommands of the remotes app's `remote` command,
        # added from here so the remotes app knows nothing of sync jobs (imported when `remote` runs).
        registry.extend_command("remote", "syncjobs.remote_cli")


def register():
    """Task functions, errors, cards and warnings: they import the sync engine, which a command
    that lists a table does without (pbsweb/registry.py, docs/DESIGN.md §1.1)."""
    from pbsweb.registry import registry
    from syncjobs import dashboard, tasks  # noqa: F401  (tasks: registers the task functions)
    from syncjobs.engine.bucket import SyncError

    registry.user_error(SyncError)
    dashboard.register()
