from rest_framework.response import Response

from core.api import ApiView

BARE_ANSWER = {"ok": True}


class BareView(ApiView):
    """The floor under every API call: the same server, middleware, API-key authentication (one indexed query) and
    renderer as ``POST /tokens``, then a constant. The tokenize benchmark divides by it."""

    required_scope = "tokens"

    def get(self, request):
        return Response(BARE_ANSWER)

    def post(self, request):
        return Response(BARE_ANSWER)  # the body is not read: it only keeps the bytes on the wire equal to /tokens
