from django.apps import AppConfig


class FaceidConfig(AppConfig):
    name = "faceid"
    verbose_name = "Face ID"

    def ready(self) -> None:
        # Logins and failed logins go to the audit log; the app role for database connections.
        from faceid import dbrole, login_audit

        login_audit.connect()
        dbrole.connect()
