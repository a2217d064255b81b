"""manage.py verify_snapshots [--project SLUG] [--json]: every snapshot file against its recorded sha256.

Exits with status 1 when any file is missing or changed since export, so it can run after a restore or from cron.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from annotation.services.integrity import snapshots_verify


class Command(BaseCommand):
    help = "Hash every dataset snapshot file and compare it with the sha256 recorded when it was exported."

    def add_arguments(self, parser):
        parser.add_argument("--project", help="only this project's snapshots (slug)")
        parser.add_argument("--json", action="store_true", help="print one JSON object per snapshot")
        parser.add_argument("--quiet", action="store_true", help="print only the snapshots that fail")

    def handle(self, *args, **options):
        project = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"no project with slug {options['project']!r}")
        checks = snapshots_verify(project=project)
        for check in checks:
            if options["quiet"] and check.ok:
                continue
            self.stdout.write(json.dumps(check.as_dict()) if options["json"] else str(check))
        bad = [c for c in checks if not c.ok]
        summary = f"{len(checks)} snapshots checked, {len(bad)} missing or changed"
        if bad:
            raise CommandError(summary)
        if not options["json"]:
            self.stdout.write(summary)
