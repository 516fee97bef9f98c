from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # GET only: DRF's OPTIONS answer cannot be rendered by the page's template renderer (a 500).
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]),
        name="swagger-ui",
    ),
    path("api/v1/", include("faceid.api.urls")),
    path("console/", include("faceid.console.urls")),
    path("", RedirectView.as_view(pattern_name="console:home", permanent=False)),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A path no route matches (/api/v1/persons/abc/): JSON in the API's error shape under /api/, so
    a client parsing JSON never gets an HTML page; Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"reason": "not_found", "detail": "No such API path."}, status=404)
    return defaults.page_not_found(request, exception)


handler404 = not_found
