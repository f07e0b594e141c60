"""The Content-Security-Policy of every page a browser renders: the admin and the API docs (Django 5.2 has none of its
own).

Both run on the origin whose session cookie lets a staff user see and change the vault, so a script that found its
way into a page must not run: scripts come from this origin only (no inline script, no eval; the docs' start-up
script is a file of its own, drf-spectacular's split view), nothing is loaded from another host (Swagger UI is the
pinned copy of drf-spectacular-sidecar), forms post here only, and no other site may frame the pages. Styles may be
inline: the admin's templates and the docs' page carry a few ``<style>`` blocks, and a style cannot run code. Images
may be ``data:`` URLs, which Swagger UI's stylesheet uses for its icons.

The API's JSON answers get no header: a browser renders nothing of them. A page that needs another policy sets its
own, which is left as it is: card capture's form, framed by its session's origin (vault/capture/pages.py).
"""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
