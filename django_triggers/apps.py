from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "django_triggers"
    verbose_name = "Triggers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Runners listed in settings register themselves on import; importing
        # them here makes `using` validation see them from the first request.
        from django_triggers.runners import load_configured_runners

        load_configured_runners()
