"""Admin pages for raters and ratings: statistics render, block/unblock work, ratings are read-only."""

import pytest

from evalsite.rating import assignment as engine
from evalsite.rating.assignment import RatingInput
from evalsite.rating.models import Rater, Rating

pytestmark = pytest.mark.django_db


def test_rater_admin_statistics_and_block_actions(client, staff_user, live_study, make_rater):
    study = live_study(n_prompts=2, redundancy=2)
    raters = [make_rater(study, f"w{i}") for i in range(2)]
    for r in raters:
        while (a := engine.lease_next(r, study)) is not None:
            engine.submit(a.token, r, RatingInput(preference="tie"))
    client.force_login(staff_user)
    page = client.get("/admin/rating/rater/")
    assert page.status_code == 200 and raters[0].pseudonym.encode() in page.content
    detail = client.get(f"/admin/rating/rater/{raters[0].pk}/change/")
    assert detail.status_code == 200 and b"2/2 (100%)" in detail.content

    client.post("/admin/rating/rater/", {"action": "block_raters", "_selected_action": [raters[0].pk]})
    r0 = Rater.objects.get(pk=raters[0].pk)
    assert r0.blocked and Rating.objects.filter(rater=r0, flagged=False).count() == 0
    client.post("/admin/rating/rater/", {"action": "unblock_raters", "_selected_action": [raters[0].pk]})
    r0.refresh_from_db()
    assert not r0.blocked and Rating.objects.filter(rater=r0, flagged=True).count() == 0


def test_rating_admin_is_read_only(client, staff_user, live_study, make_rater):
    study = live_study()
    r = make_rater(study)
    a = engine.lease_next(r, study)
    rating = engine.submit(a.token, r, RatingInput(preference="left"))
    client.force_login(staff_user)
    assert client.get("/admin/rating/rating/?flagged__exact=0").status_code == 200
    assert client.get(f"/admin/rating/rating/{rating.pk}/change/").status_code == 200
    client.post(f"/admin/rating/rating/{rating.pk}/change/", {"winner": "B"})
    rating.refresh_from_db()
    assert rating.winner == a.left_side
    assert client.get("/admin/rating/rating/add/").status_code == 403
    assert client.get("/admin/rating/assignment/").status_code == 200
