"""manage.py export_dataset --project SLUG --format F --out PATH: write a dataset snapshot and its dataset card."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project, SnapshotFormat
from annotation.services.cards import card_path
from annotation.services.exports import AGGREGATIONS, FILE_FORMATS, STYLES, snapshot_create
from common.errors import DomainError


class Command(BaseCommand):
    help = "Export the project's current annotations as a dataset file that training libraries load as it is."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", required=True, choices=SnapshotFormat.values)
        parser.add_argument("--file-format", choices=FILE_FORMATS, default="jsonl")
        parser.add_argument("--style", choices=STYLES, default="conversational")
        parser.add_argument("--sources", default="human,ai", help="comma-separated: human, ai")
        parser.add_argument(
            "--out",
            required=True,
            help="file to write (read-only once written; an existing file only with --force), or a directory (ending in / or existing) to write "
            "DIR/data.<ext> and DIR/README.md, which datasets.load_dataset(DIR) loads",
        )
        parser.add_argument("--force", action="store_true", help="overwrite the --out file if it exists")
        parser.add_argument(
            "--neutral-step",
            choices=("correct", "error"),
            default="correct",
            help="stepwise: how a 0 (neutral) step label is exported",
        )
        parser.add_argument(
            "--pairwise-as-unpaired",
            action="store_true",
            help="unpaired: also export each pairwise majority as one desirable and one undesirable row",
        )

        parser.add_argument(
            "--aggregation",
            choices=AGGREGATIONS,
            default="majority",
            help="preference/unpaired: majority vote, or dawid_skene (raters weighted by estimated reliability)",
        )

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project with slug {options['project']!r}")
        sources = [s.strip() for s in options["sources"].split(",") if s.strip()]
        out = options["out"]
        if out.endswith(("/", "\\")) or Path(out).is_dir():
            directory = Path(out)
            if directory.is_dir() and any(directory.iterdir()):
                raise CommandError(f"{directory} is not empty; a dataset directory holds one snapshot and its card")
            out = str(directory / f"data.{options['file_format']}")
        elif Path(out).exists() and not options["force"]:
            raise CommandError(f"{out} exists; pass --force to overwrite it")
        try:
            snapshot = snapshot_create(
                project=project,
                format=options["format"],
                file_format=options["file_format"],
                style=options["style"],
                sources=sources,
                out_path=out,
                neutral_step_correct=options["neutral_step"] == "correct",
                pairwise_as_unpaired=options["pairwise_as_unpaired"],
                aggregation=options["aggregation"],
            )
        except DomainError as e:
            raise CommandError(e.message) from None
        self.stdout.write(
            f"rows: {snapshot.row_count}\nsha256: {snapshot.sha256}\npath: {snapshot.path}\ncard: {card_path(snapshot)}"
        )
