"""Fixtures for the spine tests: a logged-in staff client and admin URL helpers."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse


@pytest.fixture
def admin_client_staff(client, staff_user):
    client.force_login(staff_user)
    return client


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:studies_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]
