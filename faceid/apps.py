from django.apps import AppConfig


class FaceidConfig(AppConfig):
    name = "faceid"
    verbose_name = "Face ID"
