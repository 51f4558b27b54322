"""`traffic-control create|update|list|show|remove`: rate limits for sync jobs by time frame."""
from django.http import QueryDict

from pbsweb.cli import BaseCommand, add_output_format, box_table, print_output, usage_error
from syncjobs.forms import TrafficControlForm, rate_text
from syncjobs.models import TrafficControlRule
from syncjobs.serializers import rule_json


def _rule(name: str) -> TrafficControlRule:
    rule = TrafficControlRule.objects.filter(name=name).first()
    if rule is None:
        raise usage_error(f"name: no traffic-control rule '{name}'")
    return rule


class Command(BaseCommand):
    help = ("Traffic control for sync jobs: `traffic-control create NAME --rate-out 10MiB "
            "[--burst-out B] [--timeframe 'mon..fri 08:00-18:00' ...] [--remote R ...] [--comment C]`, "
            "`traffic-control list`, `traffic-control show NAME`, `traffic-control update NAME ...`, "
            "`traffic-control remove NAME`.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("create", "update"):
            p = sub.add_parser(name)
            p.add_argument("name")
            p.add_argument("--rate-out", dest="rate_out", default=None)
            p.add_argument("--burst-out", dest="burst_out", default=None)
            p.add_argument("--timeframe", dest="timeframes", action="append", default=None,
                           help="e.g. 'mon..fri 08:00-18:00' (repeatable; none = always)")
            p.add_argument("--remote", dest="remotes", action="append", default=None,
                           help="a remote the rule applies to (repeatable; none = all remotes)")
            p.add_argument("--comment", default=None)
        ls = sub.add_parser("list")
        add_output_format(ls)
        sh = sub.add_parser("show")
        sh.add_argument("name")
        add_output_format(sh)
        rm = sub.add_parser("remove")
        rm.add_argument("name")

    def handle(self, *args, action, **opts):
        if action in ("create", "update"):
            rule = _rule(opts["name"]) if action == "update" else None
            data = {}
            if rule is not None:
                data = {"rate_out": rate_text(rule.rate_out), "burst_out": rate_text(rule.burst_out),
                        "timeframes": "\n".join(rule.timeframes or []), "comment": rule.comment}
            data["name"] = opts["name"]
            for key in ("rate_out", "burst_out", "comment"):
                if opts[key] is not None:
                    data[key] = opts[key]
            if opts["timeframes"] is not None:
                data["timeframes"] = "\n".join(opts["timeframes"])
            remotes = opts["remotes"] if opts["remotes"] is not None else (rule.remote_names() if rule else [])
            qd = QueryDict(mutable=True)
            for k, v in data.items():
                qd[k] = v
            qd.setlist("remotes", remotes)
            if action == "create" and opts["rate_out"] is None:
                raise usage_error("rate-out: required (--rate-out, e.g. 10MiB)")
            form = TrafficControlForm(qd, instance=rule)
            if not form.is_valid():
                raise usage_error(form.first_error())
            rule = form.save()
            self.stdout.write(f"{'created' if action == 'create' else 'updated'} traffic-control rule "
                              f"'{rule.name}'")
        elif action == "list":
            rules = TrafficControlRule.objects.prefetch_related("remotes")
            items = [rule_json(r) for r in rules]
            if opts["output_format"] != "text":
                print_output(self.stdout, opts["output_format"], [], [], items)
                return
            rows = [[i["name"], i["rate-out"] or "", i["burst-out"] or "",
                     ", ".join(i["timeframe"]) or "always", ", ".join(i["remote"]) or "all", i["comment"]]
                    for i in items]
            self.stdout.write(box_table(["name", "rate-out", "burst-out", "timeframe", "remotes", "comment"], rows))
        elif action == "show":
            data = rule_json(_rule(opts["name"]))
            if opts["output_format"] != "text":
                print_output(self.stdout, opts["output_format"], [], [], data)
                return
            self.stdout.write(box_table(["Name", "Value"], [
                [k, ", ".join(v) if isinstance(v, list) else (v or "")] for k, v in data.items()]))
        elif action == "remove":
            rule = _rule(opts["name"])
            rule.delete()
            self.stdout.write(f"removed traffic-control rule '{rule.name}'")
