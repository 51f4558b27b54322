# Request limits of a remote (issue 13): rate, daily caps per class, monthly budget.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("remotes", "0002_object_lock"),
    ]

    operations = [
        migrations.AddField(model_name="remote", name="request_rate",
                            field=models.PositiveIntegerField(blank=True, null=True, verbose_name="Requests per second")),
        migrations.AddField(model_name="remote", name="daily_cap_class_a",
                            field=models.PositiveBigIntegerField(blank=True, null=True, verbose_name="Daily cap, class A")),
        migrations.AddField(model_name="remote", name="daily_cap_class_b",
                            field=models.PositiveBigIntegerField(blank=True, null=True, verbose_name="Daily cap, class B")),
        migrations.AddField(model_name="remote", name="daily_cap_class_c",
                            field=models.PositiveBigIntegerField(blank=True, null=True, verbose_name="Daily cap, class C")),
        migrations.AddField(model_name="remote", name="monthly_budget",
                            field=models.DecimalField(blank=True, decimal_places=2, max_digits=12, null=True,
                                                      verbose_name="Monthly budget (USD)")),
        migrations.AddField(model_name="remote", name="on_cap",
                            field=models.CharField(choices=[("stop", "Stop the run"), ("pause", "Pause until the window resets")],
                                                   default="stop", max_length=5, verbose_name="At a cap")),
    ]
