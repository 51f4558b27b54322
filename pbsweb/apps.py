from django.apps import AppConfig


class PbswebConfig(AppConfig):
    name = "pbsweb"

    def ready(self):
        # The ground floor registers its own task types, cards and errors like any app.
        from pbsweb import dashboard, maintenance
        from pbsweb.calendarevent import ScheduleError
        from pbsweb.errors import UserError
        from pbsweb.registry import registry
        from pbsweb.worker import TaskError

        registry.task_type("taskprune", "Prune task history")
        registry.user_error(UserError, TaskError, ScheduleError)
        dashboard.register_panels()
        maintenance.register()
