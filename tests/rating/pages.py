"""How a test walks the rater pages as a browser would: entry link, consent, tasks."""

import re

# The answers the default rating form requires besides the verdict (correctness of both answers).
ANSWERED = {"correct_left": "correct", "correct_right": "unsure"}


def enter_and_consent(client, study, query: str = ""):
    """Open the entry link, agree to the consent form; the response of the first task page."""
    r = client.get(f"/r/{study.slug}/{query}")
    assert r.status_code == 302 and "/consent/" in r.url, r
    r = client.post(r.url, {"agree": "yes"})
    assert r.status_code == 302 and "/task/?t=" in r.url, r
    return client.get(r.url)


def token_of(page) -> str:
    """The assignment token in a task page's form action."""
    match = re.search(r'action="/r/[\w-]+/task/([\w-]+)/\?t=[^"]*"', page.content.decode())
    assert match, "task page has no submit form"
    return match.group(1)
