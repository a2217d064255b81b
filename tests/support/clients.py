"""Signed-in test clients: `api(user)` for the REST API (signed out when `user` is None), `web(user)` for the pages."""

from django.test import Client
from rest_framework.test import APIClient


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client
