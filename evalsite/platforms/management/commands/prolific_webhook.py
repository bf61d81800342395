"""Subscribe this server's webhook to a Prolific workspace's submission events (once per workspace).

    manage.py prolific_webhook --workspace <workspace id> --url https://<server>/platforms/hooks/prolific/ \
        --token-env EVALSITE_API_KEY_PROLIFIC_<SLUG>

Without ``EVALSITE_PROLIFIC_WEBHOOK_SECRET`` set (or with ``--new-secret``) it first creates the
workspace's secret and prints it once, for the administrator to set on the web server.
"""

from django.core.management.base import BaseCommand, CommandError

from evalsite.platforms.credentials import check_token_env, read_token
from evalsite.platforms.errors import PlatformError
from evalsite.platforms.prolific import ProlificClient
from evalsite.platforms.webhooks import SECRET_ENV, subscribe_submission_events


class Command(BaseCommand):
    help = "Subscribe the Prolific webhook (submission.status.change) for a workspace."

    def add_arguments(self, parser):
        parser.add_argument("--workspace", required=True, help="The Prolific workspace id.")
        parser.add_argument("--url", required=True, help="https://<this server>/platforms/hooks/prolific/")
        parser.add_argument("--token-env", required=True, help="The variable holding a Prolific API token.")
        parser.add_argument("--new-secret", action="store_true", help="Replace the workspace's hook secret.")

    def handle(self, *args, **options):
        if problem := check_token_env(options["token_env"]):
            raise CommandError(problem)
        token = read_token(options["token_env"])
        if token is None:
            raise CommandError(f"{options['token_env']} is not set on this server.")
        try:
            with ProlificClient(token) as client:
                setup = subscribe_submission_events(
                    client, options["workspace"], options["url"], new_secret=options["new_secret"]
                )
        except (ValueError, PlatformError) as exc:
            raise CommandError(str(exc)) from exc
        for line in setup.messages:
            self.stdout.write(line)
        if setup.new_secret:
            self.stdout.write(f"{SECRET_ENV}={setup.new_secret}")
