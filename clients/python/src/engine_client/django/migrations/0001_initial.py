from django.db import migrations, models

import engine_client.events


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='OutboxEvent',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('event_id', models.CharField(db_index=True, max_length=200)),
                ('event_type', models.CharField(max_length=200)),
                ('envelope', models.JSONField(encoder=engine_client.events.EventEncoder)),
                ('status', models.CharField(choices=[('pending', 'pending'), ('sent', 'sent'), ('refused', 'refused by the engine')], default='pending', max_length=10)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.TextField(blank=True, default='')),
            ],
            options={
                'db_table': 'engine_outbox',
                'ordering': ['id'],
                'indexes': [models.Index(condition=models.Q(('status', 'pending')), fields=['id'], name='engine_outbox_pending')],
            },
        ),
    ]
