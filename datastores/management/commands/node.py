import json

from datastores.models import StorageNode
from datastores.services import register_this_node
from pbsweb.cli import BaseCommand, box_table


class Command(BaseCommand):
    help = ("Storage nodes as backup clients reach them: `node register` records this node "
            "(PBSWEB_NODE, PBSWEB_NODE_ADDRESS, its certificate's fingerprint; the web server does "
            "it when it starts), `node list [--output-format text|json]`.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("register")
        ls = sub.add_parser("list")
        ls.add_argument("--output-format", choices=["text", "json"], default="text")

    def handle(self, *args, action, **opts):
        if action == "register":
            node = register_this_node()
            self.stdout.write(f"node {node.name}: clients connect to {node.address}, "
                              f"fingerprint {node.fingerprint or 'unknown (no certificate yet)'}")
            return
        nodes = [{"name": n.name, "address": n.address, "fingerprint": n.fingerprint,
                  "stores": [s.name for s in n.stores()]} for n in StorageNode.objects.all()]
        if opts["output_format"] == "json":
            self.stdout.write(json.dumps(nodes))
            return
        self.stdout.write(box_table(["node", "address", "fingerprint", "datastores"],
                                    [[n["name"], n["address"], n["fingerprint"], " ".join(n["stores"])]
                                     for n in nodes]))
