"""Task functions of the remotes app (worker type `remotetest`)."""
import tempfile
from pathlib import Path

from django.conf import settings

from pbsweb.worker import TaskError, run, task_function
from remotes.engine.config import RemoteConfig
from remotes.engine.connection_test import test_connection as engine_test_connection

FUNCTION = "remotes.tasks.test_connection"


class ConnectionTestError(TaskError):
    """Test Connection failed; the message is the first actionable error.
    The task ends `TASK ERROR: <message>`; a failed test is an expected outcome."""


def test_timeout() -> float:
    return float(getattr(settings, "PBSWEB_REMOTE_TEST_TIMEOUT", 10))


@task_function
def test_connection(reporter, remote: str = "", config: dict | None = None, write_probe: bool = False,
                    probe_features: bool = False, record: bool = False, timeout: float | None = None,
                    secret_key: str | None = None, ca_bundle: str | None = None, result_holder=None):
    """Test Connection of a saved remote (`remote`) or of unsaved dialog values (`config`).

    `secret_key`, `ca_bundle` and `result_holder` come as private arguments:
    never stored with the task. The ConnectionTestResult is appended to
    `result_holder` so the caller can render it.
    """
    from remotes.models import Remote
    timeout = timeout or test_timeout()
    saved = None
    with tempfile.TemporaryDirectory(prefix="pbsweb-test-") as scratch:
        if config is not None:
            values = dict(config)
            values["secret_key"] = secret_key or ""
            if ca_bundle:
                # The dialog's CA lives in a private temporary directory, removed after the test:
                # nothing of the request (the ID it typed) becomes a path.
                path = Path(scratch) / "dialog-ca.pem"
                path.write_text(ca_bundle.strip() + "\n")
                values["ca_bundle"] = str(path)
            cfg = RemoteConfig(**values)
        else:
            saved = Remote.objects.get(remote_id=remote)
            cfg = saved.config()
        _run_test(reporter, cfg, saved, write_probe, probe_features, record, timeout, result_holder)


def _run_test(reporter, cfg, saved, write_probe, probe_features, record, timeout, result_holder):
    reporter.log(f"testing remote '{cfg.id or '(new)'}': endpoint {cfg.resolved_endpoint()}, bucket '{cfg.bucket}', "
                 f"region '{cfg.region}', access key '{cfg.access_key}'")
    options = [name for name, on in (("write test", write_probe), ("feature probes", probe_features)) if on]
    if options:
        reporter.log("options: " + ", ".join(options))
    result = engine_test_connection(cfg, write_probe=write_probe, probe_features=probe_features, timeout=timeout)
    if result_holder is not None:
        result_holder.append(result)
    for message in result.messages:
        prefix = {"error": "ERROR: ", "warning": "", "info": "", "ok": ""}.get(message.level, "")
        if message.level == "warning":
            reporter.warn(message.text)
        else:
            reporter.log(prefix + message.text)
    if result.proposed:
        reporter.log("proposed settings: " + ", ".join(f"{k}={'true' if v else 'false'}"
                                                         for k, v in sorted(result.proposed.items())))
    reporter.log(result.details.get("summary", ""))
    if saved is not None and record:
        saved.record_test(result, upid=reporter.task.upid)
    errors = [m.text for m in result.messages if m.level == "error"]
    if errors:
        raise ConnectionTestError(errors[0])


test_connection.__test__ = False  # not a pytest test, though its name starts with test_


def run_connection_test(user: str, *, remote=None, config: dict | None = None, secret_key: str | None = None,
                        ca_bundle: str | None = None, write_probe=False, probe_features=False, record=False,
                        echo=None):
    """Run Test Connection as a `remotetest` task in this process.

    Returns (task, ConnectionTestResult or None)."""
    holder = []
    from remotes.engine.config import validate_remote_id
    worker_id = remote.remote_id if remote is not None else (config or {}).get("id") or ""
    if validate_remote_id(worker_id) is not None:
        worker_id = "new"
    arguments = {"write_probe": bool(write_probe), "probe_features": bool(probe_features), "record": bool(record)}
    private = {"result_holder": holder}
    if config is not None:
        arguments["config"] = {k: v for k, v in config.items() if k not in ("secret_key", "ca_bundle")}
        private["secret_key"] = secret_key or ""
        private["ca_bundle"] = ca_bundle or ""
    else:
        arguments["remote"] = remote.remote_id
    task = run(FUNCTION, "remotetest", worker_id, user, arguments, inline=True, echo=echo, private=private)
    return task, (holder[0] if holder else None)
