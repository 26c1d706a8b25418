from django.urls import path

from example_project.questionnaire import views

app_name = "questionnaire"

urlpatterns = [
    path("", views.start, name="start"),
    path("<slug:session_uid>/", views.status, name="status"),
    path("<slug:session_uid>/page/<int:page>/", views.page, name="page"),
    path("<slug:session_uid>/complete/", views.complete, name="complete"),
    path("<slug:session_uid>/complete.json", views.complete_json, name="complete_json"),
]
