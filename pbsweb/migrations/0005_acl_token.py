# API tokens get ACL entries of their own (privilege separation, as PBS).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pbsweb', '0004_task_store_job_result'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='aclentry',
            options={'ordering': ['path', 'user__username', 'token__name']},
        ),
        migrations.AddField(
            model_name='aclentry',
            name='token',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='acl', to='pbsweb.apitoken'),
        ),
        migrations.AlterField(
            model_name='aclentry',
            name='user',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='acl', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterUniqueTogether(
            name='aclentry',
            unique_together={('path', 'token', 'role'), ('path', 'user', 'role')},
        ),
        migrations.AddConstraint(
            model_name='aclentry',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('token__isnull', True), ('user__isnull', False)), models.Q(('token__isnull', False), ('user__isnull', True)), _connector='OR'), name='acl_user_or_token'),
        ),
    ]
