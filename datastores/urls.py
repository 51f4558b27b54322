from django.urls import path

from datastores import views

app_name = "datastores"

urlpatterns = [
    path("", views.datastore_list, name="list"),
    path("add/", views.datastore_add, name="add"),
    path("create/", views.datastore_create, name="create"),
    path("<str:store>/", views.summary, name="summary"),
    path("<str:store>/content/", views.content, name="content"),
    path("<str:store>/forget/<path:snapshot>", views.snapshot_forget, name="forget"),
    path("<str:store>/protect/<path:snapshot>", views.snapshot_protect, name="protect"),
    path("<str:store>/notes/<path:snapshot>", views.snapshot_notes, name="notes"),
    path("<str:store>/notes-save/<path:snapshot>", views.snapshot_notes_save, name="notes-save"),
    path("<str:store>/verify-snapshot/<path:snapshot>", views.snapshot_verify, name="verify-snapshot"),
    path("<str:store>/catalog-rebuild/<path:snapshot>", views.snapshot_catalog_rebuild, name="catalog-rebuild"),
    path("<str:store>/download/<path:snapshot>", views.snapshot_download, name="download"),
    path("<str:store>/browse/<path:snapshot>", views.snapshot_browse, name="browse"),
    path("<str:store>/download-file/<path:snapshot>", views.snapshot_download_file, name="download-file"),
    path("<str:store>/prune-gc/", views.prune_gc, name="prune-gc"),
    path("<str:store>/prune-jobs/add/", views.prune_job_add, name="prune-job-add"),
    path("<str:store>/prune-jobs/<str:id>/remove/", views.prune_job_remove, name="prune-job-remove"),
    path("<str:store>/prune-jobs/<str:id>/run/", views.prune_job_run, name="prune-job-run"),
    path("<str:store>/prune-simulate/", views.prune_simulate, name="prune-simulate"),
    path("<str:store>/prune-group/", views.prune_group_dialog, name="prune-group"),
    path("<str:store>/prune/", views.prune_run, name="prune"),
    path("<str:store>/gc/start/", views.gc_start, name="gc-start"),
    path("<str:store>/verify-jobs/", views.verify_jobs, name="verify-jobs"),
    path("<str:store>/verify-jobs/add/", views.verify_job_add, name="verify-job-add"),
    path("<str:store>/verify-jobs/<str:id>/remove/", views.verify_job_remove, name="verify-job-remove"),
    path("<str:store>/verify-jobs/<str:id>/run/", views.verify_job_run, name="verify-job-run"),
    path("<str:store>/verify/", views.verify_all, name="verify-all"),
    path("<str:store>/options/", views.options, name="options"),
    path("<str:store>/options/save/", views.options_save, name="options-save"),
    path("<str:store>/remove/", views.datastore_remove, name="remove"),
    path("<str:store>/encryption/", views.encryption, name="encryption"),
    path("<str:store>/encryption/generate/", views.encryption_generate, name="encryption-generate"),
    path("<str:store>/encryption/download/", views.encryption_download, name="encryption-download"),
    path("<str:store>/encryption/paperkey/", views.encryption_paperkey, name="encryption-paperkey"),
]
