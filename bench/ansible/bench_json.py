"""Ansible stdout callback for the bench: prints nothing, and at the end writes every
`script ...` task's stdout/stderr/rc per host, plus any failure, as JSON to
$PROVBENCH_ANSIBLE_OUT. No remote work is added."""
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "bench_json"

    def __init__(self):
        super().__init__()
        self.outputs = {}
        self.failures = []

    def _record(self, result, failure=None):
        host, task, r = result._host.get_name(), result._task.get_name(), result._result
        if task.startswith("script "):
            rec = [task[len("script "):], r.get("stdout", ""), r.get("stderr", ""), r.get("rc")]
            self.outputs.setdefault(host, []).append(rec)
        if failure:
            self.failures.append(f"{host}: {task}: {failure}: {r.get('msg', '')}"[:500])

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["PROVBENCH_ANSIBLE_OUT"], "w") as fp:
            json.dump({"outputs": self.outputs, "failures": self.failures}, fp)
