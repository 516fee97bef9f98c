from django.contrib.auth import views as auth_views
from django.urls import path

from faceid.console import views

app_name = "console"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="console:login"), name="logout"),
    path("", views.home, name="home"),
    path("organization/", views.switch_organization, name="switch_organization"),
    path("persons/", views.persons, name="persons"),
    path("persons/<int:person_id>/", views.person_detail, name="person"),
    path("persons/<int:person_id>/erase/", views.person_erase, name="person_erase"),
    path("persons/<int:person_id>/enroll/", views.enroll, name="enroll"),
    path("persons/<int:person_id>/enroll/frames/", views.enroll_frames, name="enroll_frames"),
    path("verify/", views.verify, name="verify"),
    path("verify/frames/", views.verify_frames, name="verify_frames"),
    path("policy/", views.policy, name="policy"),
    path("policy/calibration/", views.calibration, name="calibration"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("audit/", views.audit, name="audit"),
    path("audit.csv", views.audit_csv, name="audit_csv"),
]
