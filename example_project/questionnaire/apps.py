from django.apps import AppConfig


class QuestionnaireConfig(AppConfig):
    name = "example_project.questionnaire"
    label = "questionnaire"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the trigger tasks with Celery in every process (web and worker).
        from example_project.questionnaire import tasks  # noqa: F401
