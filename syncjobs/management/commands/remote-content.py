from django.core.management.base import BaseCommand

from syncjobs.remote_cli import add_content_arguments, do_content


class Command(BaseCommand):
    help = ("What a remote's bucket holds, read from its manifests (no chunks): "
            "`remote-content ID [--remote-store PREFIX] [--ns NS] [--as-of TIME] [--output-format text|json]` "
            "(also `remote content ID …`).")

    def add_arguments(self, parser):
        add_content_arguments(parser)

    def handle(self, *args, **opts):
        do_content(self.stdout, opts)
