"""/api/v1/ routes. The paths and field names of persons, faces, verify, identify and attempts are a
contract with outside clients (issue 4): add, never rename."""

from django.urls import path

from faceid.api import audit, matching, persons

app_name = "api"

urlpatterns = [
    path("persons/", persons.PersonListView.as_view(), name="person-list"),
    path("persons/<int:id>/", persons.PersonDetailView.as_view(), name="person-detail"),
    path("persons/<int:id>/faces/", matching.PersonFacesView.as_view(), name="person-faces"),
    path("verify/", matching.VerifyView.as_view(), name="verify"),
    path("identify/", matching.IdentifyView.as_view(), name="identify"),
    path("attempts/", audit.AttemptListView.as_view(), name="attempt-list"),
    path("attempts.csv", audit.AttemptCSVView.as_view(), {"format": "csv"}, name="attempt-csv"),
    path("jobs/<str:id>/", matching.JobView.as_view(), name="job-detail"),
]
