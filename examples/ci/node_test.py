#!/usr/bin/env python3
"""A small test suite run against a deployed node over ssh; writes JUnit XML (stdlib only).

NODE and SSH_CONFIG come from the environment (see the Makefile and the CI files). It checks
what the `ci` bundle of provision.toml puts on the node. Set NODE_TEST_FAIL=1 to make one test
fail on purpose (the gated destroy then keeps the node).
"""
import os
import subprocess
import sys
import time
import unittest
import xml.etree.ElementTree as ET


def ssh(*cmd):
    return subprocess.run(
        ["ssh", "-F", os.environ["SSH_CONFIG"], "-o", "BatchMode=yes", os.environ["NODE"], *cmd],
        capture_output=True, text=True, timeout=60,
    )


class NodeTest(unittest.TestCase):
    def test_login_works(self):
        self.assertEqual(ssh("true").returncode, 0)

    def test_app_config_arrived(self):
        r = ssh("cat", "/tmp/provision-ci/app.conf")
        self.assertIn("greeting = hello from CI", r.stdout)

    def test_ready_script_ran_on_this_node(self):
        r = ssh("cat", "/tmp/provision-ci/ready")
        self.assertEqual(r.stdout.strip(), os.environ["NODE"])

    def test_hostname_answers(self):
        self.assertTrue(ssh("hostname").stdout.strip())

    @unittest.skipUnless(os.environ.get("NODE_TEST_FAIL"), "only when asked to fail")
    def test_fails_on_purpose(self):
        self.fail("NODE_TEST_FAIL is set")


class JUnitResult(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.cases = []

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _record(self, test, kind=None, text=""):
        self.cases.append((test, time.monotonic() - self._t0, kind, text))

    def addSuccess(self, test):
        super().addSuccess(test); self._record(test)

    def addFailure(self, test, err):
        super().addFailure(test, err); self._record(test, "failure", self.failures[-1][1])

    def addError(self, test, err):
        super().addError(test, err); self._record(test, "error", self.errors[-1][1])

    def addSkip(self, test, reason):
        super().addSkip(test, reason); self._record(test, "skipped", reason)


def main():
    out = sys.argv[sys.argv.index("--junit") + 1]
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(NodeTest)
    result = unittest.TextTestRunner(resultclass=JUnitResult, verbosity=2).run(suite)
    root = ET.Element("testsuite", name="node_test", tests=str(len(result.cases)),
                      failures=str(len(result.failures)), errors=str(len(result.errors)),
                      skipped=str(len(result.skipped)))
    for test, secs, kind, text in result.cases:
        case = ET.SubElement(root, "testcase", classname="node_test.NodeTest",
                             name=test._testMethodName, time=f"{secs:.3f}")
        if kind:
            ET.SubElement(case, kind, message=text.splitlines()[-1] if text else kind).text = text
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
