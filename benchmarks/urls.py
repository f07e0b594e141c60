"""The product's URLs plus ``/bench/bare``, which comes first: config.urls ends with a catch-all."""

from django.urls import include, path

from benchmarks.views import BareView

handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"

urlpatterns = [
    path("bench/bare", BareView.as_view(), name="bench-bare"),
    path("", include("config.urls")),
]
