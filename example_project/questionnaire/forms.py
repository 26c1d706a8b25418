"""The questionnaire's forms: a start form and one form per page."""

import datetime

from django import forms
from django.utils import timezone


class StartForm(forms.Form):
    embedded = forms.BooleanField(
        required=False,
        label="Answered from an embedded application",
        help_text="Browser details are then not recorded.",
    )


class FirstPageForm(forms.Form):
    name = forms.CharField(max_length=200)
    birthday = forms.DateField(
        help_text="YYYY-MM-DD", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean_birthday(self) -> datetime.date:
        birthday: datetime.date = self.cleaned_data["birthday"]
        if birthday > timezone.localdate():
            raise forms.ValidationError("A birthday cannot be in the future.")
        return birthday


class MoodForm(forms.Form):
    mood = forms.ChoiceField(
        label="How do you feel today?",
        choices=[("good", "Good"), ("fine", "Fine"), ("bad", "Bad")],
        widget=forms.RadioSelect,
    )
    sleep_hours = forms.IntegerField(
        label="How many hours did you sleep last night?", min_value=0, max_value=24
    )


class CommentsForm(forms.Form):
    comments = forms.CharField(widget=forms.Textarea, required=False, max_length=2000)
    recommend = forms.BooleanField(label="Would you recommend this study?", required=False)


#: The questionnaire's pages, by number; page 1 says who is answering.
PAGE_FORMS: dict[int, type[forms.Form]] = {1: FirstPageForm, 2: MoodForm, 3: CommentsForm}
LAST_PAGE = max(PAGE_FORMS)
