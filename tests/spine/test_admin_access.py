"""The admin applies study ownership like the API: others' studies are invisible, shared ones read-only."""

import pytest
from django.contrib.auth.models import Permission

from evalsite.rating.models import Rater
from evalsite.studies.models import Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(django_user_model):
    """A staff user with every studies/rating model permission, but not a superuser."""

    def make(name: str):
        user = django_user_model.objects.create_user(name, f"{name}@example.org", f"pw-{name}-1", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
        return user

    return make


def test_admin_hides_other_studies_and_keeps_shared_ones_read_only(client, researcher, make_study):
    owner, other, colleague = researcher("owner"), researcher("other"), researcher("colleague")
    mine = make_study(slug="mine", owner=owner)
    mine.shared_with.add(colleague)
    Rater.objects.create(study=mine, platform="prolific", external_id="PROLIFIC-RAW-ID", pseudonym="pseudo-xyz")

    client.force_login(other)
    listing = client.get("/admin/studies/study/").content.decode()
    assert "mine" not in listing
    assert client.get(f"/admin/studies/study/{mine.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/studies/study/{mine.pk}/progress/").status_code == 404
    # An action posted with someone else's id does nothing.
    client.post("/admin/studies/study/", {"action": "close", "_selected_action": [mine.pk]})
    assert Study.objects.get(pk=mine.pk).status == "draft"
    assert "PROLIFIC-RAW-ID" not in client.get("/admin/rating/rater/").content.decode()

    client.force_login(colleague)
    assert "mine" in client.get("/admin/studies/study/").content.decode()
    page = client.get(f"/admin/studies/study/{mine.pk}/change/").content.decode()
    assert 'name="_save"' not in page  # view only
    mine.refresh_from_db()
    client.post("/admin/studies/study/", {"action": "build_comparisons_action", "_selected_action": [mine.pk]})
    assert not mine.comparisons.exists()

    client.force_login(owner)
    assert "pseudo-xyz" in client.get("/admin/rating/rater/").content.decode()
    # Raw platform ids are for superusers only: not searchable, not on the change form.
    assert "pseudo-xyz" not in client.get("/admin/rating/rater/?q=PROLIFIC-RAW-ID").content.decode()
    rater = Rater.objects.get(pseudonym="pseudo-xyz")
    assert "PROLIFIC-RAW-ID" not in client.get(f"/admin/rating/rater/{rater.pk}/change/").content.decode()
    client.post("/admin/studies/study/", {"action": "build_comparisons_action", "_selected_action": [mine.pk]})
    assert mine.comparisons.exists()
