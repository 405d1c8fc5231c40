from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "engine_client.django"
    label = "engine_client"  # the default, "django", would name the tables django_*
    verbose_name = "Notification engine outbox"
    default_auto_field = "django.db.models.BigAutoField"
