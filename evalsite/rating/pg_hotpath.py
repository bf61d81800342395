"""The lease engine's two hot operations on PostgreSQL, one SQL statement each.

:mod:`.assignment` implements the rules with the ORM (the SQLite demo runs that code); on
PostgreSQL it hands the common case to this module, which does the same work in one round trip:

* :func:`lease` — lock the rater, resume their live lease or pick the least-rated eligible
  comparison (``FOR UPDATE SKIP LOCKED``), bump its live counter, insert the assignment and
  return it together with the texts the page shows;
* :func:`submit` — lock the rater and the assignment, store the rating with its quality verdict,
  mark the assignment submitted, move the comparison's counter from live to submitted, update the
  rater's counters (blocking and flagging on too many failed attention checks), or return an
  expired lease to the pool; while the study is not live (paused, closed) it writes nothing.

Each statement runs in autocommit mode, so it is its own transaction. Why that is as safe as the
ORM's multi-statement transaction:

* Every statement locks the rater row first: the pick and the writes sit behind a one-time filter
  (an InitPlan) that reads the locked rater CTE, so the lock order stays rater → assignment →
  comparison and no comparison lock is held while waiting for a rater lock.
* ``FOR UPDATE`` re-reads the newest version of a row it had to wait for, and re-checks the WHERE
  clause on it (so k can never be exceeded, and a submitted assignment is seen as submitted).
* Rows that another transaction *inserted* after this statement's snapshot are not visible to it
  (two tabs of one rater leasing at the same instant). The unique constraints on
  :class:`~.models.Assignment` and :class:`~.models.Rating` turn that race into an
  ``IntegrityError``; the caller retries once with a fresh snapshot, which then resumes the
  other tab's lease or returns the stored rating.

Rare cases (the rater's own lease ran out, a blocked rater holding a lease, error spans that need
the response text) return :data:`SLOW` and the ORM code handles them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import connection

SLOW = "slow"  # the caller should take the ORM path
PREPARE_THRESHOLD = 2

_NO_BOUND = 2**31 - 1  # attention checks are not bound by k

# The rater row, locked, with the study's settings (fresh on every lease: a paused study stops
# handing out work at once). ``want_attention`` is drawn once per lease.
_RATER_CTE = """
r AS MATERIALIZED (
    SELECT r.id, r.blocked, r.tasks_submitted, r.consented_at IS NOT NULL AS consented,
           s.id AS study_id, s.status, s.redundancy, s.tasks_per_rater, s.lease_seconds,
           random() < s.attention_check_rate AS want_attention
    FROM rating_rater r JOIN studies_study s ON s.id = r.study_id
    WHERE r.id = %(rater)s AND {study_filter}
    FOR UPDATE OF r
)"""

# One branch of the pick: the least-rated eligible comparison of one kind, locked. The windowed
# branch first takes the ids of the PICK_WINDOW least-rated eligible ones (an index range on
# comparison_pool_idx) and sorts only those; the branch after it sorts the whole study and only
# runs when everything in the window is locked by other raters. The bound is repeated on the
# locked row because PostgreSQL re-checks it on the row's newest version (k is never exceeded).
_ELIGIBLE = """{t}.study_id = (SELECT study_id FROM r) AND {t}.is_attention_check = {attention}
      AND {t}.n_submitted + {t}.n_live < {bound}"""
# OFFSET 0 keeps this a per-candidate probe of the (rater, comparison) unique index. Flattened into
# an anti-join, the generic (prepared) plan guesses a rater has a handful of assignments and
# rescans all of them for every candidate: 25 ms instead of 1 ms for a rater with 500 ratings.
_NOT_SEEN = """NOT EXISTS (
        SELECT 1 FROM rating_assignment a WHERE a.rater_id = %(rater)s AND a.comparison_id = {t}.id OFFSET 0)"""
_PICK_ALL = """SELECT * FROM (
    SELECT c.id FROM studies_comparison c
    WHERE {eligible_c} AND {not_seen_c}
    ORDER BY c.n_submitted, c.n_live, random()
    LIMIT 1 FOR UPDATE OF c SKIP LOCKED) {alias}"""
# The window's ids go through an array so that the outer query fetches them by primary key; as a
# join, the generic plan hashes the whole study's comparisons to find 64 rows.
_PICK_WINDOW = """SELECT * FROM (
    SELECT c.id FROM studies_comparison c
    WHERE c.id = ANY (ARRAY(
        SELECT w.id FROM studies_comparison w
        WHERE {eligible_w} AND {not_seen_w}
        ORDER BY w.n_submitted LIMIT %(window)s))
      AND {eligible_c}
    ORDER BY c.n_submitted, c.n_live, random()
    LIMIT 1 FOR UPDATE OF c SKIP LOCKED) {alias}"""


def _branch(alias: str, attention: bool, windowed: bool) -> str:
    bound = str(_NO_BOUND) if attention else "(SELECT redundancy FROM r)"
    flag = "TRUE" if attention else "FALSE"
    template = _PICK_WINDOW if windowed else _PICK_ALL
    return template.format(
        eligible_c=_ELIGIBLE.format(t="c", attention=flag, bound=bound),
        eligible_w=_ELIGIBLE.format(t="w", attention=flag, bound=bound),
        not_seen_c=_NOT_SEEN.format(t="c"),
        not_seen_w=_NOT_SEEN.format(t="w"),
        alias=alias,
    )


_LEASE_SQL = (
    "WITH "
    + _RATER_CTE
    + """,
live AS MATERIALIZED (
    SELECT a.id, a.token, a.comparison_id, a.left_side, a.leased_at, a.expires_at
    FROM rating_assignment a
    WHERE a.rater_id = %(rater)s AND a.status = 'live' AND (SELECT TRUE FROM r)
),
pick AS MATERIALIZED (
    SELECT id FROM (
        SELECT * FROM ("""
    + _branch("pick_attention", attention=True, windowed=False)
    + """) t WHERE (SELECT want_attention FROM r)
        UNION ALL """
    + _branch("pick_window", attention=False, windowed=True)
    + """
        UNION ALL """
    + _branch("pick_any", attention=False, windowed=False)
    + """
    ) candidates
    WHERE (SELECT r.status = 'live' AND NOT r.blocked AND r.tasks_submitted < r.tasks_per_rater
                  AND (r.consented OR NOT %(require_consent)s) FROM r)
      AND NOT EXISTS (SELECT 1 FROM live)
    LIMIT 1
),
bump AS (
    UPDATE studies_comparison c SET n_live = c.n_live + 1 FROM pick WHERE c.id = pick.id RETURNING c.id
),
ins AS (
    INSERT INTO rating_assignment (rater_id, comparison_id, token, left_side, status, leased_at, expires_at)
    SELECT %(rater)s, pick.id, %(token)s, %(left)s, 'live', %(now)s,
           %(now)s + make_interval(secs => (SELECT lease_seconds FROM r))
    FROM pick
    RETURNING id, token, comparison_id, left_side, leased_at, expires_at
)
SELECT r.study_id, r.status, r.blocked, r.tasks_submitted, r.tasks_per_rater, r.consented,
       x.kind, x.id, x.token, x.comparison_id, x.left_side, x.leased_at, x.expires_at,
       c.prompt_id, c.response_a_id, c.response_b_id, c.is_attention_check, p.text, ra.text, rb.text
FROM r
LEFT JOIN (
    SELECT 'live' AS kind, * FROM live
    UNION ALL SELECT 'new', * FROM ins
) x ON TRUE
LEFT JOIN studies_comparison c ON c.id = x.comparison_id
LEFT JOIN studies_prompt p ON p.id = c.prompt_id
LEFT JOIN studies_response ra ON ra.id = c.response_a_id
LEFT JOIN studies_response rb ON rb.id = c.response_b_id
"""
)


def _cursor():
    """A Django cursor over a psycopg *server-side binding* cursor, so these statements get prepared.

    Planning the lease statement costs more than running it. Django's default psycopg cursor binds
    on the client and cannot prepare, and Django turns psycopg's automatic preparation off (for
    connection poolers); only these two statements turn it back on, on their own cursors: psycopg
    prepares a statement after PREPARE_THRESHOLD executions on a connection, and persistent
    connections (CONN_MAX_AGE) keep the plans. Set ``RATING_PREPARED_STATEMENTS = False`` behind a
    pooler in transaction mode that cannot handle prepared statements (PgBouncer < 1.21).
    The Django wrapper keeps query logging and execute wrappers working.
    """
    connection.ensure_connection()
    raw_connection = connection.connection
    if raw_connection.prepare_threshold is None and getattr(settings, "RATING_PREPARED_STATEMENTS", True):
        # Affects only server-side binding cursors like this one: the ORM's cursors never prepare.
        raw_connection.prepare_threshold = PREPARE_THRESHOLD
    raw = psycopg.Cursor(raw_connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def _compact(sql: str) -> str:
    # One line, single spaces (no literal in these statements holds a run of spaces): shorter
    # statements stay under psycopg's query-conversion cache limit and cost less to send.
    return " ".join(sql.split())


_LEASE_SQL_BY_STUDY = _compact(_LEASE_SQL.replace("{study_filter}", "s.id = %(study)s"))
_LEASE_SQL_BY_SLUG = _compact(_LEASE_SQL.replace("{study_filter}", "s.slug = %(slug)s"))


@dataclass
class Lease:
    """What one lease statement found: the rater's state and, when there is work, the task."""

    study_id: int
    study_live: bool
    blocked: bool
    tasks_submitted: int
    tasks_per_rater: int
    consented: bool
    kind: str | None = None  # "live" (resumed), "new", or None (no work)
    assignment_id: int | None = None
    token: str = ""
    comparison_id: int | None = None
    left_side: str = ""
    leased_at: datetime | None = None
    expires_at: datetime | None = None
    prompt_id: int | None = None
    response_a_id: int | None = None
    response_b_id: int | None = None
    is_attention_check: bool = False
    prompt_text: str = ""
    text_a: str = ""
    text_b: str = ""


def lease(
    rater_id: int,
    now: datetime,
    *,
    window: int,
    study_id: int | None = None,
    slug: str | None = None,
    require_consent: bool = False,
):
    """Resume or take a lease for one rater in one statement; ``None`` when the rater is unknown.

    Give ``study_id`` or ``slug`` (a cookie's rater id must belong to the study in the URL);
    ``require_consent`` leases nothing to a rater who has not consented yet.
    Returns :data:`SLOW` when the rater's own live lease has run out (the ORM path expires it and
    leases anew). The caller checks ``study_live`` / ``blocked`` / quota before using ``kind``.
    """
    params = {
        "rater": rater_id,
        "study": study_id,
        "slug": slug,
        "now": now,
        "token": secrets.token_urlsafe(32),
        "left": secrets.choice("AB"),
        "window": window,
        "require_consent": require_consent,
    }
    with _cursor() as cursor:
        cursor.execute(_LEASE_SQL_BY_STUDY if study_id is not None else _LEASE_SQL_BY_SLUG, params)
        row = cursor.fetchone()
    if row is None:
        return None
    result = Lease(
        study_id=row[0],
        study_live=row[1] == "live",
        blocked=row[2],
        tasks_submitted=row[3],
        tasks_per_rater=row[4],
        consented=row[5],
    )
    if row[6] is not None:
        (
            result.kind,
            result.assignment_id,
            result.token,
            result.comparison_id,
            result.left_side,
            result.leased_at,
            result.expires_at,
            result.prompt_id,
            result.response_a_id,
            result.response_b_id,
            result.is_attention_check,
            result.prompt_text,
            result.text_a,
            result.text_b,
        ) = row[6:20]
    if result.kind == "live" and result.study_live and (result.expires_at <= now or result.blocked):
        return SLOW
    return result


# --- submit ------------------------------------------------------------------------------------

# Parameters are in screen terms (left/right); the statement maps them to the stored A/B with the
# assignment's left_side, judges quality like quality.judge/apply, and writes everything.
_SUBMIT_SQL = """
WITH r AS MATERIALIZED (
    SELECT r.id, r.blocked, r.attention_failed, s.id AS study_id, s.status = 'live' AS study_live,
           s.min_seconds_per_task, s.max_attention_failures
    FROM rating_rater r JOIN studies_study s ON s.id = r.study_id
    WHERE r.id = %(rater)s
    FOR UPDATE OF r
),
a AS MATERIALIZED (
    SELECT a.id, a.status, a.left_side, a.comparison_id, a.leased_at, a.expires_at
    FROM rating_assignment a
    WHERE a.token = %(token)s AND a.rater_id = %(rater)s AND (SELECT TRUE FROM r)
    FOR UPDATE OF a
),
v AS MATERIALIZED (
    SELECT a.*, r.blocked, r.attention_failed, r.study_id, r.study_live, r.min_seconds_per_task,
           r.max_attention_failures,
           c.is_attention_check, c.expected_winner,
           CASE WHEN a.left_side = 'A' THEN 'B' ELSE 'A' END AS right_side,
           CASE %(pref)s WHEN 'left' THEN a.left_side
                         WHEN 'right' THEN CASE WHEN a.left_side = 'A' THEN 'B' ELSE 'A' END
                         ELSE %(pref)s END AS winner,
           a.status = 'live' AND a.expires_at > %(now)s AND NOT r.blocked AND r.study_live AS ok,
           EXTRACT(EPOCH FROM (%(now)s - a.leased_at))::float8 AS server_seconds
    FROM a CROSS JOIN r JOIN studies_comparison c ON c.id = a.comparison_id
),
q AS MATERIALIZED (
    SELECT v.*,
           CASE WHEN v.is_attention_check THEN v.winner = v.expected_winner END AS attention_passed,
           v.server_seconds < v.min_seconds_per_task AS too_fast
    FROM v WHERE v.ok
),
j AS MATERIALIZED (
    SELECT q.*,
           q.attention_failed + (q.attention_passed IS FALSE)::int > q.max_attention_failures AS blocks
    FROM q
),
ins AS (
    INSERT INTO rating_rating (assignment_id, study_id, comparison_id, rater_id, winner, strength, style,
                               correct_a, correct_b, error_spans, rationale, server_seconds, client_seconds,
                               attention_passed, flagged, created_at)
    SELECT j.id, j.study_id, j.comparison_id, %(rater)s, j.winner, %(strength)s,
           jsonb_strip_nulls(jsonb_build_object(j.left_side, %(style_left)s::jsonb,
                                                j.right_side, %(style_right)s::jsonb)),
           CASE WHEN j.left_side = 'A' THEN %(correct_left)s ELSE %(correct_right)s END,
           CASE WHEN j.left_side = 'A' THEN %(correct_right)s ELSE %(correct_left)s END,
           '[]'::jsonb, %(rationale)s, j.server_seconds, %(client_seconds)s,
           j.attention_passed, j.too_fast OR j.blocks, %(now)s
    FROM j
    RETURNING *
),
done AS (
    UPDATE rating_assignment a SET status = 'submitted', submitted_at = %(now)s FROM j WHERE a.id = j.id
),
counted AS (
    UPDATE studies_comparison c SET n_live = c.n_live - 1, n_submitted = c.n_submitted + 1
    FROM j WHERE c.id = j.comparison_id
),
counters AS (
    UPDATE rating_rater rr SET
        tasks_submitted = rr.tasks_submitted + 1,
        attention_passed = rr.attention_passed + (j.attention_passed IS TRUE)::int,
        attention_failed = rr.attention_failed + (j.attention_passed IS FALSE)::int,
        too_fast = rr.too_fast + j.too_fast::int,
        blocked = rr.blocked OR j.blocks,
        blocked_reason = CASE WHEN j.blocks THEN
            'Failed ' || (j.attention_failed + (j.attention_passed IS FALSE)::int) || ' attention checks (more than '
            || j.max_attention_failures || ').' ELSE rr.blocked_reason END
    FROM j WHERE rr.id = %(rater)s
    RETURNING rr.tasks_submitted AS r_tasks_submitted, rr.attention_passed AS r_attention_passed,
              rr.attention_failed AS r_attention_failed, rr.too_fast AS r_too_fast,
              rr.blocked AS r_blocked, rr.blocked_reason AS r_blocked_reason
),
flag AS (
    UPDATE rating_rating old SET flagged = TRUE FROM j WHERE old.rater_id = %(rater)s AND j.blocks
),
expire AS (
    UPDATE rating_assignment a SET status = 'expired' FROM v
    WHERE a.id = v.id AND v.status = 'live' AND NOT v.ok AND v.study_live
),
released AS (
    UPDATE studies_comparison c SET n_live = c.n_live - 1
    FROM v WHERE c.id = v.comparison_id AND v.status = 'live' AND NOT v.ok AND v.study_live
)
SELECT v.id, v.status, v.ok, v.study_live, counters.*, ins.*
FROM v LEFT JOIN ins ON TRUE LEFT JOIN counters ON TRUE
"""


_SUBMIT_SQL_COMPACT = _compact(_SUBMIT_SQL)
RATER_COUNTERS = ("tasks_submitted", "attention_passed", "attention_failed", "too_fast", "blocked", "blocked_reason")


@dataclass
class Submitted:
    """What one submit statement did. ``status`` is the assignment's status before it ran."""

    status: str | None  # None: no such token for this rater
    assignment_id: int | None = None
    study_live: bool = True  # False: the study is paused or closed, and nothing was written
    stored: bool = False
    rating_row: dict | None = None  # the inserted rating's columns, when stored
    rater_counters: dict | None = None  # the rater's counters after it, when stored


def submit(token: str, rater_id: int, now: datetime, payload) -> Submitted:
    """Store a rating (``payload`` is a :class:`~.assignment.RatingInput` without error spans)."""
    params = {
        "rater": rater_id,
        "token": token,
        "now": now,
        "pref": payload.preference,
        "strength": payload.strength,
        "style_left": json.dumps(payload.style["left"]) if "left" in payload.style else None,
        "style_right": json.dumps(payload.style["right"]) if "right" in payload.style else None,
        "correct_left": payload.correct.get("left", ""),
        "correct_right": payload.correct.get("right", ""),
        "rationale": payload.rationale,
        "client_seconds": payload.client_seconds,
    }
    with _cursor() as cursor:
        cursor.execute(_SUBMIT_SQL_COMPACT, params)
        row = cursor.fetchone()
        names = [col.name for col in cursor.description]
    if row is None:
        return Submitted(status=None)
    result = Submitted(status=row[1], assignment_id=row[0], study_live=bool(row[3]), stored=bool(row[2]))
    if result.stored:
        n = len(RATER_COUNTERS)
        result.rater_counters = dict(zip(RATER_COUNTERS, row[4 : 4 + n], strict=True))
        result.rating_row = dict(zip(names[4 + n :], row[4 + n :], strict=True))
    return result
