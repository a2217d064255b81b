"""manage.py import_data --project SLUG FILE [--format F]: import a JSON Lines file, a `datasets` directory
(save_to_disk) or a Parquet/Arrow file, all or nothing."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from annotation.services.dataset_imports import dataset_import, is_dataset_path
from annotation.services.imports import IMPORT_FORMATS, data_import
from common.errors import Invalid


class Command(BaseCommand):
    help = (
        "Import prompts or labelled data (preference, unpaired, stepwise, sft) from a JSON Lines file (plain or "
        "gzip-compressed, e.g. .jsonl.gz), a directory "
        "written by datasets' save_to_disk, or a .parquet/.arrow file (the same columns as the JSON Lines keys). "
        "The format is told from the first record unless --format names it. Nothing is written when any line is bad."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the .jsonl (or .jsonl.gz) file, save_to_disk directory, .parquet or .arrow file")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--format", choices=IMPORT_FORMATS, default=None, help="skip detection")
        parser.add_argument("--split", default=None, help="datasets directories with splits: which one (default train)")
        parser.add_argument("--max-bytes", type=int, default=None, help="size cap (default: IMPORT_MAX_BYTES)")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"no project with slug {options['project']!r}")
        path = Path(options["file"])
        if not path.is_file() and not path.is_dir():
            raise CommandError(f"{path}: no such file")
        try:
            if is_dataset_path(path):
                report = dataset_import(
                    project=project, path=path, format=options["format"], split=options["split"],
                    max_bytes=options["max_bytes"],
                )  # fmt: skip
                self.stdout.write(str(report))
                return
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
