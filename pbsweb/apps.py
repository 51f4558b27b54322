from django.apps import AppConfig


class PbswebConfig(AppConfig):
    name = "pbsweb"

    def ready(self):
        # The ground floor registers its own task types, cards and errors like any app.
        from pbsweb.registry import registry

        registry.task_type("taskprune", "Prune task history")
        registry.later(register)


def register():
    """Cards, ticks and errors: read by the worker, the scheduler and the dashboard only
    (pbsweb/registry.py, docs/DESIGN.md §1.1)."""
    from pbsweb import dashboard, maintenance
    from pbsweb.calendarevent import ScheduleError
    from pbsweb.errors import UserError
    from pbsweb.registry import registry
    from pbsweb.worker import TaskError

    registry.user_error(UserError, TaskError, ScheduleError)
    dashboard.register_panels()
    maintenance.register()
