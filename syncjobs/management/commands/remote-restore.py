from pbsweb.cli import BaseCommand
from syncjobs.remote_cli import add_restore_arguments, do_restore


class Command(BaseCommand):
    help = ("Restore one archive straight from a bucket, fetching only its chunks: "
            "`remote-restore ID REMOTE-STORE SNAPSHOT ARCHIVE TARGET [--keyfile F] [--ns NS]` "
            "(also `remote restore …`).")

    def add_arguments(self, parser):
        add_restore_arguments(parser)

    def handle(self, *args, **opts):
        do_restore(self.stdout, opts)
