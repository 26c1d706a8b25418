from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "django_triggers"
    verbose_name = "Triggers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Runners register themselves when their classes are defined: import
        # the built-in ones, and those listed in settings, so that `using` is
        # checked against them from the first request.
        from django_triggers import registry, runners  # noqa: F401

        registry.load_configured_runners()
