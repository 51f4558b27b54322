"""Tasks carry their datastore, job and JSON result in columns.

Existing tasks are filled in from what the previous release stored: the task's arguments
and worker id (the one place worker ids are still read apart), and its TaskMetric rows,
which the `result` field replaces."""
from django.db import migrations, models

JOB_ARGUMENT = {"syncjob": "job_id", "drill": "job_id", "prunejob": "job", "verificationjob": "job"}


def fill_in(apps, schema_editor):
    Task = apps.get_model("pbsweb", "Task")
    TaskMetric = apps.get_model("pbsweb", "TaskMetric")
    results: dict[int, dict] = {}
    for metric in TaskMetric.objects.all():
        results.setdefault(metric.task_id, {})[metric.name] = int(metric.value)
    for task in Task.objects.all().iterator():
        args = task.arguments or {}
        store = ""
        if task.function.startswith("datastores.tasks."):
            store = args.get("store") or task.worker_id.split(":", 1)[0]
        elif task.worker_type == "syncjob":  # <remote>:<remote-store>:<store>:<ns>:<job>
            parts = task.worker_id.split(":")
            store = parts[2] if len(parts) >= 5 else ""
        job = args.get(JOB_ARGUMENT.get(task.worker_type, ""), "") or ""
        if store or job or task.pk in results:
            Task.objects.filter(pk=task.pk).update(store=store[:32], job=job[:64], result=results.get(task.pk, {}))


class Migration(migrations.Migration):

    dependencies = [
        ('pbsweb', '0003_task_job_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='task',
            name='job',
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name='task',
            name='result',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='task',
            name='store',
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddIndex(
            model_name='task',
            index=models.Index(fields=['store', '-starttime'], name='pbsweb_task_store_589d3f_idx'),
        ),
        migrations.RunPython(fill_in, migrations.RunPython.noop),
        migrations.AlterUniqueTogether(
            name='taskmetric',
            unique_together=None,
        ),
        migrations.RemoveField(
            model_name='taskmetric',
            name='task',
        ),
        migrations.DeleteModel(
            name='TaskMetric',
        ),
    ]
