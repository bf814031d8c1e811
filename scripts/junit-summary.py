#!/usr/bin/env python3
"""Per-category pass/fail/skip summary of a conformance junit.xml.

Understands both OCI conformance suites:
  * v1.1.1 (Ginkgo): "[It] OCI Distribution Conformance Tests Pull Setup ..." -> category "Pull"
  * main (redesigned): "OCI Conformance Test/sha256 blobs/post only/..." -> category "sha256 blobs"
Exit status: 1 if any test failed, else 0.
"""
import argparse
import collections
import sys
import xml.etree.ElementTree as ET

GINKGO_ROOT = "OCI Distribution Conformance Tests"
GINKGO_CATEGORIES = ("Content Discovery", "Content Management", "Pull", "Push")
FAIL_STATES = {"failed", "failure", "error", "panicked", "interrupted", "aborted", "timedout"}
SKIP_STATES = {"skipped", "pending", "disabled"}


def outcome(tc):
    tags = {child.tag for child in tc}
    status = (tc.get("status") or "").lower()
    if "failure" in tags or "error" in tags or status in FAIL_STATES:
        return "fail"
    if "skipped" in tags or status in SKIP_STATES:
        return "skip"
    return "pass"


def category(name):
    if "/" in name:  # main suite: path of subtests
        parts = name.split("/")
        return parts[1] if len(parts) > 1 else parts[0]
    text = name
    if text.startswith("["):  # Ginkgo node type, e.g. "[It] ", "[BeforeSuite]"
        node, _, rest = text.partition("]")
        if node != "[It" or not rest:
            return "(suite " + node.lstrip("[") + ")"
        text = rest.strip()
    if text.startswith(GINKGO_ROOT):
        text = text[len(GINKGO_ROOT):].strip()
    for cat in GINKGO_CATEGORIES:
        if text.startswith(cat):
            return cat
    return text.split(" ")[0] if text else "(none)"


def message(tc):
    for child in tc:
        if child.tag in ("failure", "error"):
            text = child.get("message") or child.text or ""
            break
    else:
        out = tc.find("system-out")
        text = out.text if out is not None and out.text else ""
    text = " ".join(text.split())
    return text[:220] + ("..." if len(text) > 220 else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("junit", nargs="+")
    ap.add_argument("--failures", type=int, default=40, help="list at most N failed tests (default 40)")
    args = ap.parse_args()

    counts = collections.OrderedDict()
    failed = []
    headers = []
    for path in args.junit:
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as e:
            print(f"cannot read {path}: {e}")
            return 1
        attrs = {k: root.get(k) for k in ("tests", "failures", "errors", "skipped", "disabled") if root.get(k)}
        headers.append(f"{path}: " + " ".join(f"{k}={v}" for k, v in attrs.items()))
        for tc in root.iter("testcase"):
            name = tc.get("name") or "?"
            cat = category(name)
            res = outcome(tc)
            c = counts.setdefault(cat, collections.Counter())
            c[res] += 1
            if res == "fail":
                failed.append((name, message(tc)))

    width = max([len(k) for k in counts] + [8])
    print(f"  {'category':<{width}}  {'pass':>5} {'fail':>5} {'skip':>5}")
    tot = collections.Counter()
    for cat, c in counts.items():
        tot.update(c)
        mark = "  <-- FAIL" if c["fail"] else ""
        print(f"  {cat:<{width}}  {c['pass']:>5} {c['fail']:>5} {c['skip']:>5}{mark}")
    print(f"  {'TOTAL':<{width}}  {tot['pass']:>5} {tot['fail']:>5} {tot['skip']:>5}  (testcase elements)")
    for h in headers:
        print(f"  junit totals, {h}")
    if failed:
        unique = list(collections.OrderedDict.fromkeys(failed))
        print(f"  failed tests ({len(failed)}, {len(unique)} distinct):")
        for name, msg in unique[: args.failures]:
            print(f"    FAIL {name}" + (f"\n         {msg}" if msg else ""))
        if len(unique) > args.failures:
            print(f"    ... {len(unique) - args.failures} more (see junit.xml / report.html)")
    return 1 if tot["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
