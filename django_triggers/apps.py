from django.apps import AppConfig
from django.core.checks import register


class TriggersConfig(AppConfig):
    name = "django_triggers"
    verbose_name = "Triggers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Runners register themselves when their classes are defined: import
        # the built-in ones, and those listed in settings, so that `using` is
        # checked against them from the first request. An entry that does not
        # import is left to the system checks to report (django_triggers.E002).
        from django_triggers import checks, metrics, registry, runners, tracing  # noqa: F401

        registry.configured_runner_errors()
        # The optional integrations (each does nothing if its package is missing).
        metrics.connect()
        tracing.connect()
        for check in checks.CHECKS:
            register(check, checks.TAG)
