"""Round trip: MT-bench prompts and answers imported, both turns rated, exported as TRL preference
pairs (JSONL and Parquet) that ``datasets`` loads, and as MT-bench human judgments."""

import json
import re

import pytest

from evalsite.rating.models import Rating
from evalsite.studies.models import Comparison

pytestmark = pytest.mark.django_db
ANSWERED = {"correct_left": "correct", "correct_right": "unsure"}


def rate_everything(client, study) -> int:
    """A crowd worker rates every task, preferring the teacher's answer (a tie on question 131)."""
    r = client.get(f"/r/{study.slug}/?PROLIFIC_PID=w1&STUDY_ID=s&SESSION_ID=x")
    r = client.post(r.url, {"agree": "yes"})
    rated = 0
    while "/task/" in r.url:
        html = client.get(r.url).content.decode()
        if 'data-assignment="' not in html:
            break
        token = re.search(r'data-assignment="([^"]+)"', html).group(1)
        comparison = Comparison.objects.get(assignments__token=token)
        left = comparison.assignments.get(token=token).left_side  # which stored side is shown left
        teacher_left = (comparison.response_a if left == "A" else comparison.response_b).model.alias == "teacher"
        verdict = "tie" if comparison.prompt.source_id.startswith("131") else ("left" if teacher_left else "right")
        r = client.post(f"/r/{study.slug}/task/{token}/", {**ANSWERED, "preference": verdict})
        rated += 1
    return rated


@pytest.fixture
def rated(client, mt_bench_live, staff_user):
    study = mt_bench_live()
    study.owner = staff_user
    study.save()
    assert rate_everything(client, study) == 6
    assert Rating.objects.filter(study=study).count() == 6
    client.force_login(staff_user)
    return study


def test_trl_pairs_load_with_datasets(client, rated, tmp_path):
    datasets = pytest.importorskip("datasets")
    r = client.get(f"/api/v1/studies/{rated.slug}/trl-pairs.jsonl")
    assert r.status_code == 200
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"".join(r.streaming_content))
    pairs = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(pairs) == 4  # the two ties (question 131) are left out
    assert set(pairs.column_names) >= {"prompt", "chosen", "rejected", "turn"}
    by = {(row["prompt_id"], row["turn"]): row for row in pairs}
    one = by[("111", 1)]
    assert one["prompt"] == [{"role": "user", "content": rated.prompts.get(source_id="111").text}]
    teacher_first = "The legs are 4 and 3, so the area is 4 × 3 / 2 = **6**."
    assert one["chosen"] == [{"role": "assistant", "content": teacher_first}]
    assert one["chosen_model"] == "teacher" and one["rejected_model"] == "imitation"
    # Turn 2: the models were asked different conversations (their own first answers), so the
    # prompt is the shared first user turn and chosen / rejected carry each one's own first reply.
    two = by[("111:turn2", 2)]
    assert two["prompt"] == one["prompt"]
    assert [m["role"] for m in two["chosen"]] == ["assistant", "user", "assistant"]
    assert two["chosen"][0]["content"] == one["chosen"][0]["content"]
    assert two["chosen"][1]["content"] == "How long is the side opposite the right angle?"
    assert two["rejected"][0]["content"].startswith("Great question! The area of this triangle is **12**")
    assert two["rejected"][2]["content"] == "The hypotenuse is **7**, because 4 + 3 = 7."

    # Parquet, and ties kept (marked) in the standard (text) format.
    r = client.get(f"/api/v1/studies/{rated.slug}/trl-pairs.parquet?ties=mark&prompt_format=text")
    assert r.status_code == 200 and r["Content-Type"] == "application/vnd.apache.parquet"
    path = tmp_path / "pairs.parquet"
    path.write_bytes(b"".join(r.streaming_content))
    texts = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert len(texts) == 6 and sorted(set(texts["label"])) == ["preference", "tie"]
    single = next(row for row in texts if row["prompt_id"] == "111")
    assert single["prompt"] == rated.prompts.get(source_id="111").text and single["chosen"].endswith("**6**.")
    later = next(row for row in texts if row["prompt_id"] == "111:turn2")
    assert later["prompt"].startswith("User: A right triangle") and later["prompt"].endswith("Assistant:")
    assert "User: How long is the side" in later["chosen"] and later["chosen"].endswith("= **5**.")


def test_bad_export_options_are_refused(client, rated):
    assert client.get(f"/api/v1/studies/{rated.slug}/trl-pairs.jsonl?ties=half").status_code == 400
    assert client.get(f"/api/v1/studies/{rated.slug}/trl-pairs.jsonl?prompt_format=xml").status_code == 400


def test_mt_bench_judgments(client, rated):
    r = client.get(f"/api/v1/studies/{rated.slug}/mt-bench-judgments.jsonl")
    rows = [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines()]
    assert len(rows) == 6
    assert {(row["question_id"], row["turn"]) for row in rows} == {(q, t) for q in (81, 111, 131) for t in (1, 2)}
    row = next(r for r in rows if (r["question_id"], r["turn"]) == (111, 2))
    assert (row["model_a"], row["model_b"], row["winner"]) == ("teacher", "imitation", "model_a")
    assert row["judge"].startswith("crowd_")
    assert [m["role"] for m in row["conversation_a"]] == ["user", "assistant", "user", "assistant"]
    assert row["conversation_b"][1]["content"].startswith("Great question!")
    assert next(r for r in rows if r["question_id"] == 131)["winner"] == "tie"


def test_ratings_export_and_report_tables_carry_the_turn(client, rated):
    r = client.get(f"/api/v1/studies/{rated.slug}/ratings.jsonl")
    rows = [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines()]
    assert sorted(row["turn"] for row in rows) == [1, 1, 1, 2, 2, 2]
    from evalsite.dashboard.loader import load_frames

    ratings, responses = load_frames(rated)
    assert sorted(ratings["turn"]) == [1, 1, 1, 2, 2, 2] and set(responses["turn"]) == {1, 2}
