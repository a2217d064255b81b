"""manage.py import_data --project SLUG FILE [--format F]: import a JSON Lines file, all or nothing."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.errors import Invalid
from annotation.models import Project
from annotation.services.imports import IMPORT_FORMATS, data_import


class Command(BaseCommand):
    help = (
        "Import prompts or labelled data (preference, unpaired, stepwise, sft) from a JSON Lines file. "
        "The format is told from the first record unless --format names it. Nothing is written when any line is bad."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the .jsonl file")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", choices=IMPORT_FORMATS, default=None, help="skip detection")
        parser.add_argument("--max-bytes", type=int, default=None, help="size cap (default: IMPORT_MAX_BYTES)")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project with slug {options['project']!r}")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            with path.open("rb") as stream:
                report = data_import(
                    project=project,
                    stream=stream,
                    filename=path.name,
                    format=options["format"],
                    max_bytes=options["max_bytes"],
                )
        except Invalid as e:
            problems = [p for messages in e.fields.values() for p in messages]
            raise CommandError("\n".join([f"{path.name}: nothing was imported", *problems])) from None
        self.stdout.write(str(report))
