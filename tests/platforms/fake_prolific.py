"""A contract server for Prolific's REST API: the endpoints evalsite calls, on 127.0.0.1 only.

Shapes, statuses and rules are recorded from Prolific's public API reference (read 2026-11):

- Authentication: ``Authorization: Token <token>``; errors as ``{"error": {"status", "error_code",
  "title", "detail"}}`` (https://docs.prolific.com/api-reference/introduction).
- Studies (https://docs.prolific.com/api-reference/studies): ``POST /api/v1/studies/`` creates an
  ``UNPUBLISHED`` draft (``completion_codes`` as ``{"code", "code_type", "actions": [{"action"}]}``,
  ``reward`` in pence/cents, ``estimated_completion_time`` in minutes, ``total_available_places``,
  ``prolific_id_option``); ``POST /studies/{id}/transition/`` (``PUBLISH``, ``PAUSE``, ``START``,
  ``STOP``); ``GET`` / ``PATCH /studies/{id}/`` (a published study's places only increase).
- Submissions (https://docs.prolific.com/api-reference/submissions): ``GET /submissions/?study=``
  paginated by ``page`` / ``page_size`` (``results``, ``_links.next``, ``meta.count``); statuses
  RESERVED, ACTIVE, TIMED-OUT, AWAITING REVIEW, APPROVED, RETURNED, REJECTED;
  ``POST /submissions/{id}/transition/`` (``APPROVE``; ``REJECT`` needs ``rejection_category`` and a
  ``message`` of at least 100 characters; idempotent: a repeat is ignored);
  ``POST /submissions/{id}/request-return/`` (``request_return_reasons``); ``GET
  /submissions/{id}/`` with ``bonus_payments`` (pence/cents).
- Bonuses (https://docs.prolific.com/api-reference/bonuses): ``POST
  /api/v1/submissions/bonus-payments/`` with ``study_id`` and ``csv_bonuses`` ("<id>,<amount>\\n",
  amounts in currency units; 400 naming ids that did not take part) answers ``id``, ``amount``,
  ``fees``, ``total_amount`` (cents) and pays nothing; ``POST /api/v1/bulk-bonus-payments/{id}/pay/``
  pays and is **not idempotent**: a repeated request pays again, exactly as the docs warn.
- Rate limits: the docs say limits exist without numbers; a 429 with ``Retry-After`` is what a
  client must handle, injected here with :meth:`FakeProlific.fail`.

Faults (:meth:`FakeProlific.fail`), each used once, in order: ``"429"`` (refused, not processed),
``"500"`` (a server error before processing), ``"timeout"`` (processed, then the answer comes too
late for the client: the case where a payment happened but the caller cannot know).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STUDY_STATUSES_OPEN = {"ACTIVE", "PAUSED"}
REJECTION_CATEGORIES = {
    "TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL", "FAILED_CHECK", "LOW_EFFORT",
    "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA", "UNSUPP_DEVICE", "OTHER",
}


def _id() -> str:
    return secrets.token_hex(12)  # Prolific ids are 24 hex characters


class Reply(Exception):
    def __init__(self, status: int, body=None, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def error(status: int, title: str, detail) -> Reply:
    return Reply(status, {"error": {"status": status, "error_code": 140000 + status, "title": title, "detail": detail}})


class FakeProlific:
    def __init__(self, token: str = "test-token", timeout_sleep: float = 1.5):
        self.token = token
        self.timeout_sleep = timeout_sleep
        self.studies: dict[str, dict] = {}
        self.submissions: dict[str, dict] = {}
        self.bulk: dict[str, dict] = {}
        self.ledger: list[tuple[str, int]] = []  # (submission id, cents) for every payment made
        self.requests: list[tuple[str, str, object]] = []
        self.faults: list[list] = []  # [method, path pattern, kind, requests to let through first]
        self.secrets: dict[str, str] = {}  # workspace id -> its one active hook secret
        self.subscriptions: dict[str, dict] = {}
        self.pending: dict[str, str] = {}  # subscription id -> the X-Hook-Secret that confirms it
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- control ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api/v1"

    def start(self) -> FakeProlific:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, path_pattern: str, kind: str, after: int = 0) -> None:
        """The next ``method`` request whose path matches ``path_pattern`` (after ``after`` such
        requests went through) gets this fault."""
        self.faults.append([method, re.compile(path_pattern), kind, after])

    def add_study(self, status: str = "ACTIVE", places: int = 10) -> str:
        study_id = _id()
        self.studies[study_id] = {"id": study_id, "status": status, "total_available_places": places,
                                  "places_taken": 0, "reward": 100, "currency_code": "GBP"}
        return study_id

    def add_submission(self, study_id: str, participant_id: str | None = None, status: str = "AWAITING REVIEW") -> str:
        sub_id = _id()
        self.submissions[sub_id] = {
            "id": sub_id,
            "study_id": study_id,
            "participant_id": participant_id or _id(),
            "status": status,
            "started_at": "2026-11-20T10:00:00.000000Z",
            "completed_at": "2026-11-20T10:20:00.000000Z" if status not in {"ACTIVE", "RESERVED"} else None,
            "study_code": "DONE123",
            "bonus_payments": [],
            "return_requested": None,
        }
        return sub_id

    def paid(self, submission_id: str) -> list[int]:
        return [cents for sid, cents in self.ledger if sid == submission_id]

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.search(pattern, p))

    # --- the API ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body) -> tuple[int, object]:
        m = re.fullmatch
        if method == "POST" and path == "/api/v1/studies/":
            return 201, self.create_study(body)
        if match := m(r"/api/v1/studies/(\w+)/", path):
            study = self._study(match[1])
            if method == "GET":
                return 200, study
            if method == "PATCH":
                return 200, self.update_study(study, body)
        if method == "POST" and (match := m(r"/api/v1/studies/(\w+)/transition/", path)):
            return 200, self.transition_study(self._study(match[1]), body)
        if method == "GET" and path == "/api/v1/submissions/":
            return 200, self.list_submissions(query)
        if match := m(r"/api/v1/submissions/(\w+)/", path):
            if method == "GET":
                return 200, self._submission(match[1])
        if method == "POST" and (match := m(r"/api/v1/submissions/(\w+)/transition/", path)):
            return 200, self.transition_submission(self._submission(match[1]), body)
        if method == "POST" and (match := m(r"/api/v1/submissions/(\w+)/request-return/", path)):
            return 200, self.request_return(self._submission(match[1]), body)
        if method == "POST" and path == "/api/v1/submissions/bonus-payments/":
            return 201, self.set_up_bonuses(body)
        if method == "POST" and (match := m(r"/api/v1/bulk-bonus-payments/(\w+)/pay/", path)):
            return 202, self.pay(match[1])
        if method == "POST" and path == "/api/v1/hooks/secrets/":
            return 201, self.create_secret(body)
        if method == "GET" and path == "/api/v1/hooks/subscriptions/":
            workspace = (query.get("workspace_id") or [""])[0]
            return 200, {"results": [s for s in self.subscriptions.values() if s["workspace_id"] == workspace]}
        if method == "POST" and path == "/api/v1/hooks/subscriptions/":
            return self.subscribe(body)
        if method == "POST" and (match := m(r"/api/v1/hooks/subscriptions/(\w+)/", path)):
            return 200, self.confirm(match[1], body)
        raise error(404, "Not found", f"No route {method} {path}")

    # Webhooks (https://docs.prolific.com/api-reference/webhooks/subscribing): one secret per
    # workspace; a subscription needs one, answers an X-Hook-Secret header, and stays disabled
    # until that value is posted back; target URLs must be https.
    def create_secret(self, body: dict) -> dict:
        workspace = body.get("workspace_id")
        if not workspace:
            raise error(400, "Bad request", {"workspace_id": ["This field is required."]})
        self.secrets[workspace] = secrets.token_urlsafe(32)
        return {"id": _id(), "value": self.secrets[workspace], "workspace_id": workspace}

    def subscribe(self, body: dict):
        missing = [f for f in ("event_type", "target_url", "workspace_id") if not body.get(f)]
        if missing:
            raise error(400, "Bad request", {f: ["This field is required."] for f in missing})
        if body["workspace_id"] not in self.secrets:
            raise error(400, "Bad request", "Create a secret for the workspace before subscribing.")
        if not str(body["target_url"]).startswith("https://"):
            raise error(400, "Bad request", {"target_url": ["The URL must use https."]})
        sub_id = _id()
        self.subscriptions[sub_id] = {"id": sub_id, "event_type": body["event_type"], "target_url": body["target_url"],
                                      "workspace_id": body["workspace_id"], "is_enabled": False}
        self.pending[sub_id] = secrets.token_hex(16)
        raise Reply(201, dict(self.subscriptions[sub_id]), {"X-Hook-Secret": self.pending[sub_id]})

    def confirm(self, sub_id: str, body: dict) -> dict:
        if sub_id not in self.subscriptions:
            raise error(404, "Not found", "No such subscription.")
        if body.get("secret") != self.pending.get(sub_id):
            raise error(400, "Bad request", "The secret does not match the subscription's X-Hook-Secret.")
        self.subscriptions[sub_id]["is_enabled"] = True
        return dict(self.subscriptions[sub_id])

    def _study(self, study_id: str) -> dict:
        if study_id not in self.studies:
            raise error(404, "Not found", "Study not found.")
        return self.studies[study_id]

    def _submission(self, sub_id: str) -> dict:
        if sub_id not in self.submissions:
            raise error(404, "Not found", "Submission not found.")
        return self.submissions[sub_id]

    def create_study(self, body: dict) -> dict:
        required = ["name", "description", "external_study_url", "prolific_id_option", "completion_codes",
                    "total_available_places", "estimated_completion_time", "reward"]
        missing = [f for f in required if body.get(f) in (None, "", [])]
        if missing:
            raise error(400, "Bad request", {f: ["This field is required."] for f in missing})
        for field in ("total_available_places", "estimated_completion_time", "reward"):
            if not isinstance(body[field], int) or body[field] <= 0:
                raise error(400, "Bad request", {field: ["A positive integer is required."]})
        codes = body["completion_codes"]
        complete = all({"code", "code_type", "actions"} <= set(c) for c in codes)
        if not complete or len({c["code"] for c in codes}) != len(codes):
            raise error(400, "Bad request", {"completion_codes": ["Each needs code, code_type and actions; unique."]})
        if "{{%PROLIFIC_PID%}}" not in body["external_study_url"]:
            raise error(400, "Bad request", {"external_study_url": ["Needs the {{%PROLIFIC_PID%}} parameter."]})
        study = {**body, "id": _id(), "status": "UNPUBLISHED", "places_taken": 0, "currency_code": "GBP"}
        self.studies[study["id"]] = study
        return study

    def update_study(self, study: dict, body: dict) -> dict:
        if "total_available_places" in body:
            new = body["total_available_places"]
            if not isinstance(new, int) or new <= 0:
                raise error(400, "Bad request", {"total_available_places": ["A positive integer is required."]})
            if study["status"] != "UNPUBLISHED" and new < study["total_available_places"]:
                raise error(400, "Bad request", "You can only increase the number of places of a published study.")
            study["total_available_places"] = new
        return study

    def transition_study(self, study: dict, body: dict) -> dict:
        action = body.get("action")
        moves = {"PUBLISH": ({"UNPUBLISHED"}, "ACTIVE"), "PAUSE": ({"ACTIVE"}, "PAUSED"),
                 "START": ({"PAUSED"}, "ACTIVE"), "STOP": (STUDY_STATUSES_OPEN, "AWAITING REVIEW")}
        if action not in moves or study["status"] not in moves[action][0]:
            raise error(400, "Bad request", f"Cannot {action} a study that is {study['status']}.")
        study["status"] = moves[action][1]
        return study

    def list_submissions(self, query: dict) -> dict:
        study_id = query.get("study", [""])[0]
        page, size = int(query.get("page", ["1"])[0]), int(query.get("page_size", ["20"])[0])
        rows = [s for s in self.submissions.values() if not study_id or s["study_id"] == study_id]
        chunk = rows[(page - 1) * size: page * size]
        more = page * size < len(rows)
        base = f"/api/v1/submissions/?study={study_id}&page_size={size}"
        return {
            "results": [{k: v for k, v in s.items() if k != "bonus_payments"} for s in chunk],
            "_links": {"self": {"href": f"{base}&page={page}"},
                       "next": {"href": f"{base}&page={page + 1}" if more else None},
                       "previous": {"href": f"{base}&page={page - 1}" if page > 1 else None}},
            "meta": {"count": len(rows)},
        }

    def transition_submission(self, sub: dict, body: dict) -> dict:
        action = body.get("action")
        target = {"APPROVE": "APPROVED", "REJECT": "REJECTED"}.get(action)
        if target is None:
            raise error(400, "Bad request", {"action": ["Unknown action."]})
        if sub["status"] == target:
            return sub  # idempotent: the repeat is ignored
        if sub["status"] != "AWAITING REVIEW":
            raise error(400, "Bad request", f"A submission that is {sub['status']} cannot be {target.lower()}.")
        if action == "REJECT":
            if body.get("rejection_category") not in REJECTION_CATEGORIES:
                raise error(400, "Bad request", {"rejection_category": ["Required for REJECT."]})
            if len(body.get("message") or "") < 100:
                raise error(400, "Bad request", {"message": ["It must be at least 100 chars long."]})
        sub["status"] = target
        return sub

    def request_return(self, sub: dict, body: dict) -> dict:
        reasons = body.get("request_return_reasons")
        if not isinstance(reasons, list) or not reasons:
            raise error(400, "Bad request", {"request_return_reasons": ["This field is required."]})
        sub["return_requested"] = "2026-11-21T09:00:00Z"
        return {"id": sub["id"], "status": sub["status"], "participant": sub["participant_id"],
                "return_requested": sub["return_requested"]}

    def set_up_bonuses(self, body: dict) -> dict:
        study_id, text = body.get("study_id"), body.get("csv_bonuses") or ""
        self._study(study_id)
        rows, wrong = [], []
        for line in filter(None, (x.strip() for x in text.splitlines())):
            ident, _, amount = line.partition(",")
            sub = self.submissions.get(ident) or next(
                (s for s in self.submissions.values() if s["participant_id"] == ident and s["study_id"] == study_id),
                None,
            )
            if sub is None or sub["study_id"] != study_id:
                wrong.append(ident)
                continue
            rows.append((sub["id"], int(Decimal(amount) * 100)))
        if wrong:
            raise error(400, "Bad request", f"These IDs did not take part in the study: {', '.join(wrong)}")
        amount = sum(c for _, c in rows)
        bulk_id = _id()
        self.bulk[bulk_id] = {"rows": rows, "pays": 0}
        fees = round(amount / 3)
        return {"id": bulk_id, "study": study_id, "amount": amount, "fees": fees, "vat": 0,
                "total_amount": amount + fees, "csv_bonuses": text}

    def pay(self, bulk_id: str) -> dict:
        if bulk_id not in self.bulk:
            raise error(404, "Not found", "Bulk bonus payment not found.")
        bulk = self.bulk[bulk_id]
        bulk["pays"] += 1  # not idempotent: every call pays
        for sub_id, cents in bulk["rows"]:
            self.ledger.append((sub_id, cents))
            self.submissions[sub_id]["bonus_payments"].append(cents)
        return {}

    # --- HTTP -------------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _serve(self, method: str):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                with fake.lock:
                    fake.requests.append((method, url.path, body))
                    fault = None
                    for candidate in [f for f in fake.faults if f[0] == method and f[1].search(url.path)]:
                        if candidate[3] > 0:
                            candidate[3] -= 1
                        elif fault is None:
                            fault = candidate
                    if fault:
                        fake.faults.remove(fault)
                try:
                    if self.headers.get("Authorization") != f"Token {fake.token}":
                        raise error(401, "Unauthorized", "Authentication credentials were not provided.")
                    if fault and fault[2] == "429":
                        raise Reply(429, {"error": {"status": 429, "title": "Too many requests",
                                                    "detail": "Request was throttled."}}, {"Retry-After": "0"})
                    if fault and fault[2] == "500":
                        raise error(500, "Server error", "Something went wrong.")
                    with fake.lock:
                        status, answer = fake.handle(method, url.path, parse_qs(url.query), body)
                    if fault and fault[2] == "timeout":
                        time.sleep(fake.timeout_sleep)  # done, but the answer is too late for the client
                    reply = Reply(status, answer)
                except Reply as r:
                    reply = r
                payload = b"" if reply.body is None or reply.status == 202 else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PATCH(self):
                self._serve("PATCH")

        return Handler
