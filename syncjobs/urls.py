"""Pages of the sync jobs app (included at the site root)."""
from django.urls import path

from syncjobs import views

urlpatterns = [
    path("sync-jobs/", views.job_list, name="syncjob-list"),
    path("sync-jobs/add/", views.job_add, name="syncjob-add"),
    path("sync-jobs/<str:job>/edit/", views.job_edit, name="syncjob-edit"),
    path("sync-jobs/<str:job>/remove/", views.job_remove, name="syncjob-remove"),
    path("sync-jobs/<str:job>/run/", views.job_run, name="syncjob-run"),
    path("sync-jobs/<str:job>/run-as-of/", views.job_run_as_of, name="syncjob-run-as-of"),
    path("sync-jobs/<str:job>/log/", views.job_log, name="syncjob-log"),
    path("sync-jobs/<str:job>/plan/", views.job_plan_view, name="syncjob-plan"),
    path("sync-jobs/<str:job>/prune-simulate/", views.job_prune_simulate, name="syncjob-prune-simulate"),
    path("datastore/<str:store>/sync-jobs/", views.store_job_list, name="datastore-syncjobs"),
    path("traffic-control/", views.traffic_control, name="traffic-control"),
    path("traffic-control/add/", views.rule_add, name="traffic-control-add"),
    path("traffic-control/<str:rule>/edit/", views.rule_edit, name="traffic-control-edit"),
    path("traffic-control/<str:rule>/remove/", views.rule_remove, name="traffic-control-remove"),
]

from syncjobs import views_remote  # noqa: E402

urlpatterns += [
    path("remotes/<str:remote>/content/", views_remote.remote_content, name="remote-content"),
    path("remotes/<str:remote>/content/restore/", views_remote.remote_restore, name="remote-content-restore"),
    path("remotes/<str:remote>/recover/", views_remote.remote_recover, name="remote-recover"),
    path("drills/", views_remote.drill_list, name="drill-list"),
    path("drills/add/", views_remote.drill_add, name="drill-add"),
    path("drills/<str:job>/edit/", views_remote.drill_edit, name="drill-edit"),
    path("drills/<str:job>/remove/", views_remote.drill_remove, name="drill-remove"),
    path("drills/<str:job>/run/", views_remote.drill_run, name="drill-run"),
    path("drills/<str:job>/log/", views_remote.drill_log, name="drill-log"),
]
