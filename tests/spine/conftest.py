"""Fixtures for the spine tests: a logged-in staff client."""

import pytest


@pytest.fixture
def admin_client_staff(client, staff_user):
    client.force_login(staff_user)
    return client
