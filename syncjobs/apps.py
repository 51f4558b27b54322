from django.apps import AppConfig


class SyncJobsConfig(AppConfig):
    name = "syncjobs"

    def ready(self):
        # `remote content` / `remote restore`: subcommands of the remotes app's `remote` command,
        # added from here so the remotes app knows nothing of sync jobs (DESIGN §1).
        from syncjobs.remote_cli import install_remote_hook
        install_remote_hook()
