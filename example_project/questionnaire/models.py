from django.db import models


class Subject(models.Model):
    """The person answering a questionnaire."""

    session_uid = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=200)
    birthday = models.DateField()
    browser = models.JSONField(null=True, blank=True)
    score = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class PageResponse(models.Model):
    subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="pages")
    page = models.PositiveIntegerField()
    answers = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject", "page"], name="questionnaire_one_page"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} page {self.page}"
