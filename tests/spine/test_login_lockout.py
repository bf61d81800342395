"""The admin login locks a username out from an address after repeated failures (django-axes).

Before, any number of passwords could be tried. The admin's Add-assignment page (a 500 once) is
checked here too: assignments are the lease engine's, never added by hand.
"""

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def login(client, username: str, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_admin_login_locks_out_after_failures(client, django_user_model):
    django_user_model.objects.create_user("res", "res@example.org", "right-pw-1", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        page = login(client, "res", "wrong")
        assert page.status_code == 200 and b"Please enter the correct username" in page.content
    assert login(client, "res", "wrong").status_code == 429
    # Locked: even the right password is refused now, and nobody is logged in.
    assert login(client, "res", "right-pw-1").status_code == 429
    assert client.get("/admin/").status_code == 302


def test_a_right_password_resets_the_count(client, django_user_model):
    django_user_model.objects.create_user("res", "res@example.org", "right-pw-1", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "res", "wrong")
    assert login(client, "res", "right-pw-1").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "res", "wrong").status_code == 200


@pytest.mark.parametrize("model", ["assignment", "rating", "rater"])
def test_admin_add_pages_of_engine_rows_are_refused_not_500(admin_client, model):
    assert admin_client.get(f"/admin/rating/{model}/add/").status_code == 403
