"""manage.py quality --project SLUG [--json]: agreement, aggregation and leaderboard figures."""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from annotation.quality.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES
from annotation.quality.report import quality_report
from annotation.quality.selectors import ALL_SOURCES


def _fmt(ci: dict | None) -> str:
    if not ci or ci.get("estimate") is None:
        return "n/a"
    if ci.get("low") is None:
        return f"{ci['estimate']:.3f}"
    return f"{ci['estimate']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


class Command(BaseCommand):
    help = "Inter-annotator agreement per kind, aspect, annotator and guideline version, and the model leaderboard."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--json", action="store_true", help="print the full report as JSON")
        parser.add_argument("--sources", default=",".join(ALL_SOURCES), help="comma-separated: human, ai")
        parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (0: none)")
        parser.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="confidence level of the intervals")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-leaderboard", action="store_true")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project with slug {options['project']!r}")
        sources = [s.strip() for s in options["sources"].split(",") if s.strip()]
        unknown = set(sources) - set(ALL_SOURCES)
        if unknown or not sources:
            raise CommandError(f"sources must be among {', '.join(ALL_SOURCES)}")
        if not 0 < options["level"] < 1 or options["resamples"] < 0:
            raise CommandError("--level must be in (0, 1) and --resamples non-negative")
        report = quality_report(
            project=project,
            sources=sources,
            n_resamples=options["resamples"],
            level=options["level"],
            seed=options["seed"],
            leaderboard=not options["no_leaderboard"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self._summary(report)

    def _summary(self, report: dict) -> None:
        out = self.stdout.write
        out(f"project {report['project']}  sources {','.join(report['sources'])}")
        kinds = report["kinds"]
        blocks = [
            ("pairwise choice", kinds["pairwise"]["choice"]),
            ("pairwise strength", kinds["pairwise"]["preference"]),
            ("step labels", kinds["steps"]["labels"]),
        ]
        if "thumb" in kinds["rating"]:
            blocks.append(("rating thumb", kinds["rating"]["thumb"]))
        blocks += [(f"rating {aspect}", b) for aspect, b in kinds["rating"]["aspects"].items()]
        for name, block in blocks:
            if not block["ratings"]:
                continue
            alphas = "  ".join(f"alpha[{level}] {_fmt(ci)}" for level, ci in block["alpha"].items())
            out(
                f"{name}: {block['ratings']} ratings, {block['items_with_overlap']} items rated twice+  {alphas}  "
                f"fleiss {_fmt(block['fleiss_kappa'])}  agreement {_fmt(block['percent_agreement'])}"
            )
        ranking = kinds["ranking"]
        if ranking["ratings"]:
            out(f"ranking: W {_fmt(ranking['kendall_w'])}  tau-b {_fmt(ranking['kendall_tau_b'])}")
        first = kinds["steps"]["first_error"]
        if first["ratings"]:
            out(f"steps: first-error agreement {_fmt(first['agreement'])}")
        board = report.get("leaderboard")
        if board and board["models"]:
            out(f"leaderboard ({board['votes']} votes):")
            for row in board["models"]:
                low = "n/a" if row["low"] is None else f"{row['low']:.0f}"
                high = "n/a" if row["high"] is None else f"{row['high']:.0f}"
                out(f"  {row['rank']:>3}. {row['model']:<40} {row['rating']:7.1f}  [{low}, {high}]  games {row['games']}")
