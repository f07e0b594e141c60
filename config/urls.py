from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from backoffice.dashboard import views as dashboard
from backoffice.demo.checkout import checkout as demo_checkout
from backoffice.health import LiveView, ReadyView
from backoffice.metrics import MetricsView
from core.api import EndpointNotFoundView

admin.site.site_header = admin.site.site_title = "Token vault back office"
admin.site.index_title = "Back office"
admin.site.site_url = None  # "/" is the API, not a site to view

handler400 = "core.errors.handler400"
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"

public = {"authentication_classes": [], "permission_classes": []}

urlpatterns = [
    # Behind the admin site's own check (a session signed in with both factors), not staff status alone.
    path("admin/dashboard/", admin.site.admin_view(dashboard.dashboard), name="admin-dashboard"),
    path("admin/dashboard/live/", admin.site.admin_view(dashboard.dashboard_live), name="admin-dashboard-live"),
    path("admin/", admin.site.urls),
    path("healthz", LiveView.as_view(), name="healthz"),
    path("readyz", ReadyView.as_view(), name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(**public), name="schema"),
    # The split view serves Swagger UI's start-up script as a file of its own (/api/docs/?script), which the
    # Content-Security-Policy lets run, where an inline one would not (core/middleware.py).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema", **public), name="docs"),
    path("", include("vault.api.urls")),
    path("", include("notifications.api.urls")),
    path("", include("networks.api.urls")),
    # Card capture's pages for the shopper's browser: capture.js and the framed form (vault/capture/pages.py).
    path("", include("vault.capture.urls")),
    # Only where DEMO_PAGES is on (the embedded run, the tests); elsewhere it answers like an unknown path.
    path("demo/checkout/", demo_checkout, name="demo-checkout"),
    # Anything else answers endpointNotFound in the API's error shape.
    re_path(r"^(?!admin/|static/).*$", EndpointNotFoundView.as_view()),
]
