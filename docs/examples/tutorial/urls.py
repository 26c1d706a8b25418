"""questionnaire/urls.py"""

from django.urls import path

from . import views

urlpatterns = [
    path("questionnaires/", views.start),
    path("questionnaires/<str:session_uid>/pages/1/", views.first_page),
    path("questionnaires/<str:session_uid>/pages/<int:number>/", views.page),
    path("questionnaires/<str:session_uid>/complete/", views.complete),
]
