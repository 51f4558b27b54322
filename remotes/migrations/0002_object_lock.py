from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('remotes', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='remote',
            name='object_lock_days',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='remote',
            name='object_lock_mode',
            field=models.CharField(choices=[('governance', 'Governance'), ('compliance', 'Compliance')],
                                   default='governance', max_length=12),
        ),
        migrations.AddField(
            model_name='remote',
            name='locks_extended',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='remote',
            name='locks_extended_time',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
