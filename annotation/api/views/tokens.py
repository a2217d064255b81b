"""Sign-in over the API: exchange a username and password for a token (rate-limited), or revoke it."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response as HttpResponse
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from common import signin
from common.views import parse_input

from .. import serializers as s


class TokenView(APIView):
    """Exchange a username and password for an API token (rate-limited); DELETE revokes it."""

    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=s.TokenInput, responses={200: dict})
    def post(self, request):
        data = parse_input(s.TokenInput, request)
        wait = signin.retry_after(request, data["username"])
        if wait:
            body = {"code": "too_many_failures", "detail": f"too many failed sign-ins; try again in {wait} s"}
            return HttpResponse(body, status=429, headers={"Retry-After": str(wait)})
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            signin.failure_record(request, data["username"])
            return HttpResponse({"code": "bad_credentials", "detail": "wrong username or password"}, status=400)
        signin.success_record(request, data["username"])
        token, _ = Token.objects.get_or_create(user=user)
        return HttpResponse({"token": token.key})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        if not request.user.is_authenticated:
            return HttpResponse(status=401)
        Token.objects.filter(user=request.user).delete()
        return HttpResponse(status=204)

    def get_throttles(self):
        return super().get_throttles() if self.request.method == "POST" else []
