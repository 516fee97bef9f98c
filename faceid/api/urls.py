"""/api/v1/ routes. The paths and field names of persons, faces, verify, identify and attempts are a
contract with outside clients (issue 4): add, never rename."""

from django.urls import path

from faceid.api import views

app_name = "api"

urlpatterns = [
    path("persons/", views.PersonListView.as_view(), name="person-list"),
    path("persons/<int:id>/", views.PersonDetailView.as_view(), name="person-detail"),
    path("persons/<int:id>/faces/", views.PersonFacesView.as_view(), name="person-faces"),
    path("verify/", views.VerifyView.as_view(), name="verify"),
    path("identify/", views.IdentifyView.as_view(), name="identify"),
    path("attempts/", views.AttemptListView.as_view(), name="attempt-list"),
    path("attempts.csv", views.AttemptCSVView.as_view(), {"format": "csv"}, name="attempt-csv"),
    path("jobs/<str:id>/", views.JobView.as_view(), name="job-detail"),
]
