from django.contrib.auth import views as auth_views
from django.urls import path

from faceid.console import access, api_keys, audit, matching, persons, policy

app_name = "console"

urlpatterns = [
    path("login/", access.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="console:login"), name="logout"),
    path("", persons.home, name="home"),
    path("organization/", access.switch_organization, name="switch_organization"),
    path("persons/", persons.persons, name="persons"),
    path("persons/<int:person_id>/", persons.person_detail, name="person"),
    path("persons/<int:person_id>/erase/", persons.person_erase, name="person_erase"),
    path("persons/<int:person_id>/enroll/", matching.enroll, name="enroll"),
    path("persons/<int:person_id>/enroll/frames/", matching.enroll_frames, name="enroll_frames"),
    path("verify/", matching.verify, name="verify"),
    path("verify/frames/", matching.verify_frames, name="verify_frames"),
    path("policy/", policy.policy, name="policy"),
    path("policy/calibration/", policy.calibration, name="calibration"),
    path("api-keys/", api_keys.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", api_keys.api_key_revoke, name="api_key_revoke"),
    path("audit/", audit.audit, name="audit"),
    path("audit.csv", audit.audit_csv, name="audit_csv"),
]
