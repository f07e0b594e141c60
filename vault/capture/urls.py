"""The browser's pages of card capture (``pages``), beside the API's ``/capture/<id>/card`` (vault/api/urls.py)."""

from django.urls import path

from vault.capture import pages

urlpatterns = [
    path("capture.js", pages.capture_script, name="capture-script"),
    path("capture/<str:public_id>", pages.capture_frame, name="capture-frame"),
]
