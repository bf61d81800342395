"""``manage.py plan_study``: how precise a pairwise study will be, and what it costs.

    manage.py plan_study --models 3 --prompts 180 --k 3 --win-rate 0.45 --tie-rate 0.15 --icc 0.1
    manage.py plan_study ... --target-halfwidth 0.03 --json      # + prompts_needed, k_needed
    manage.py plan_study --study demo --target-halfwidth 0.05    # the study's design and pilot ratings

Predicts the 95% half-width of P(model rated >= teacher) (``win_rate_ci_halfwidth``), of the win
rate with ties as half and of Bradley-Terry differences, the power against parity, and the
ratings, rater-hours and money; with a target half-width, the prompts (at k) and the k (at these
prompts) that reach it. ``--simulate N`` checks the prediction against N simulated studies.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from evalsite.analysis.planning import DEFAULT_ICC, Design, plan, simulate_estimates


def _fmt_points(x: float | None) -> str:
    return "n/a" if x is None else f"±{100 * x:.1f} points"


class Command(BaseCommand):
    help = "Plan a pairwise study: predicted interval half-widths, power, ratings, rater-hours and cost."

    def add_arguments(self, parser) -> None:
        d = Design()
        parser.add_argument("--models", type=int, help=f"Models including the teacher (default {d.models}).")
        parser.add_argument("--prompts", type=int, help=f"Prompts (default {d.prompts}).")
        parser.add_argument("--k", type=int, help=f"Ratings per comparison (default {d.k}).")
        parser.add_argument("--win-rate", type=float, help=f"P(model wins) vs the teacher (default {d.win_rate}).")
        parser.add_argument("--tie-rate", type=float, help=f"P(tie or both bad) (default {d.tie_rate}).")
        parser.add_argument(
            "--icc", type=float, help=f"Within-prompt correlation of ratings (default {DEFAULT_ICC}, or the pilot's)."
        )
        parser.add_argument("--target-halfwidth", type=float, help="Target half-width of P(>= teacher), e.g. 0.03.")
        parser.add_argument("--pairing", choices=["teacher", "all"], help="Each model vs the teacher, or all pairs.")
        parser.add_argument("--cost-per-task", type=float, help=f"Pay per task (default {d.cost_per_task}).")
        parser.add_argument(
            "--platform-fee", type=float, help=f"Platform fee as a share of pay (default {d.platform_fee:.3f})."
        )
        parser.add_argument("--seconds-per-task", type=float, help=f"Seconds per task (default {d.seconds_per_task}).")
        parser.add_argument(
            "--attention-check-rate",
            type=float,
            help=f"Share of tasks that are checks (default {d.attention_check_rate}).",
        )
        parser.add_argument(
            "--difference", type=float, help=f"Difference from parity for the power (default {d.difference})."
        )
        parser.add_argument("--study", metavar="SLUG", help="Start from this study's design and its ratings (pilot).")
        parser.add_argument("--simulate", type=int, default=0, metavar="N", help="Check against N simulated studies.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options) -> None:
        names = (
            "models", "prompts", "k", "win_rate", "tie_rate", "icc", "pairing", "cost_per_task", "platform_fee",
            "seconds_per_task", "attention_check_rate", "difference",
        )  # fmt: skip
        given = {name: options[name] for name in names if options.get(name) is not None}
        target = options.get("target_halfwidth")
        if options.get("study"):
            result = self._study_plan(options["study"], given, target)
        else:
            try:
                result = plan(Design().with_(**given), target)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        if options["simulate"]:
            if options["simulate"] < 2:
                raise CommandError("--simulate needs at least 2 studies (200 or more for a useful check).")
            design = Design(**result["design"])
            result["simulated"] = simulate_estimates(design, options["simulate"])
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        else:
            self._print(result)

    def _study_plan(self, slug: str, given: dict, target: float | None) -> dict:
        from evalsite.dashboard.study_plan import PlanInputError, study_plan
        from evalsite.studies.models import Study

        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study with slug {slug!r}.")
        data = {**given, **({"target_halfwidth": target} if target is not None else {})}
        try:
            return study_plan(study, data)
        except PlanInputError as exc:
            raise CommandError(str(exc)) from exc

    def _print(self, r: dict) -> None:
        d = r["design"]
        out = self.stdout.write
        pairing = "all pairs" if d["pairing"] == "all" else "each vs the teacher"
        out(
            f"Design: {d['models']} models ({pairing}: {r['comparisons_per_prompt']} comparisons per prompt), "
            f"{d['prompts']} prompts, k = {d['k']} ratings per comparison"
        )
        out(
            f"  win rate {d['win_rate']:.3f}, ties {d['tie_rate']:.3f}, within-prompt correlation {d['icc']:.3f} "
            f"(design effect {r['design_effect']:.2f})"
        )
        if r.get("sources"):
            out("  from: " + ", ".join(f"{k} {v}" for k, v in r["sources"].items() if v != "given"))
        out(f"P(rated >= teacher), one model: {_fmt_points(r['win_rate_ci_halfwidth'])} (95%)")
        between = r["bt_between_models_ci_halfwidth_elo"]
        out(
            f"Win rate (ties as half): {_fmt_points(r['win_rate_half_ties_ci_halfwidth'])}; Bradley-Terry vs the "
            f"teacher: ±{r['bt_vs_teacher_ci_halfwidth_elo']:.1f} Elo"
            + (f", between two models: ±{between:.1f} Elo" if between is not None else "")
        )
        p = r["power"]
        out(
            f"Power to detect {100 * p['difference']:.0f} points from parity: {p['power']:.0%} "
            f"(80% needs {p['prompts_for_80_percent']} prompts at k = {d['k']})"
        )
        out(
            f"Ratings: {r['ratings']:,} ({r['tasks']:,} paid tasks with attention checks), "
            f"{r['rater_hours']:.1f} rater-hours, cost {r['cost']:,.2f} "
            f"(pay {r['pay']:,.2f} + fees {r['platform_fees']:,.2f})"
        )
        if r.get("target_halfwidth") is not None:
            at_p = r["at_prompts_needed"]
            line = (
                f"Target {_fmt_points(r['target_halfwidth'])}: {r['prompts_needed']} prompts at k = {d['k']} "
                f"({at_p['ratings']:,} ratings, cost {at_p['cost']:,.2f})"
            )
            if r["k_needed"] is not None:
                line += f"; or k = {r['k_needed']} on {d['prompts']} prompts (cost {r['at_k_needed']['cost']:,.2f})"
            else:
                line += f"; no k reaches it on {d['prompts']} prompts"
            out(line)
        if r.get("simulated"):
            s = r["simulated"]
            out(f"Simulated ({s['n_studies']} studies): {_fmt_points(s['win_rate_ci_halfwidth'])}")
        if r.get("status"):
            out(f"Now: {r['status']['reason']}")
            for row in r["progress"]["models"]:
                out(
                    f"  {row['model']}: {row['n_ratings']} ratings, reached {_fmt_points(row['reached_halfwidth'])} "
                    f"(planned {_fmt_points(row['planned_halfwidth'])})"
                )
            left = r["progress"]["to_finish"]
            out(f"  to finish the plan: {left['ratings']:,} more ratings, cost {left['cost']:,.2f}")
        out("Assumptions: " + "; ".join(r["assumptions"]) + ".")
