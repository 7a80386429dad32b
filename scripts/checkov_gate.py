"""Judges checkov's JSON report of infra/template.yaml against the skip file (infra/checkov-skips.yaml).

Usage: checkov_gate.py REPORT.json SKIPS.yaml   (run with .venv-checkov/bin/python: it has PyYAML)

Fails (exit 1) on a finding the skip file does not list, on a listed (check, resource) that no
longer fails (a stale skip: delete it), on a skip written in the template itself (`checkov:skip`),
on a malformed skip file, and on a report that scanned nothing. One checkov run, no skips passed to
checkov: the comparison happens here, so stale entries show.
"""

from __future__ import annotations

import json
import re
import sys
from typing import NoReturn

import yaml

CHECK_ID = re.compile(r"^CKV2?_[A-Z0-9]+_[0-9]+$")
LOGICAL_ID = re.compile(r"^[A-Za-z0-9]+$")


def fail(message: str) -> NoReturn:
    print(f"checkov: {message}", file=sys.stderr)
    sys.exit(1)


def load_report(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"no readable report at {path} ({e}); did checkov fail?")
    # One framework gives one object; several give a list.
    reports = report if isinstance(report, list) else [report]
    found = [r for r in reports if isinstance(r, dict) and r.get("check_type") == "cloudformation"]
    if len(found) != 1:
        fail(f"{path} holds no cloudformation report")
    report = found[0]
    summary = report.get("summary", {})
    if summary.get("parsing_errors", 0) or report["results"].get("parsing_errors"):
        fail(f"checkov could not parse the template: {report['results'].get('parsing_errors')}")
    if not summary.get("resource_count"):
        fail("checkov found no resource in the template")
    return report


def load_skips(path: str) -> dict[tuple[str, str], str]:
    with open(path, encoding="utf-8") as f:
        entries = yaml.safe_load(f)
    if not isinstance(entries, list) or not entries:
        fail(f"{path}: expected a list of entries (check, resources, reason)")
    skips: dict[tuple[str, str], str] = {}
    for n, entry in enumerate(entries, 1):
        where = f"{path}, entry {n}"
        if not isinstance(entry, dict) or set(entry) != {"check", "resources", "reason"}:
            fail(f"{where}: needs exactly check, resources and reason")
        check, resources, reason = entry["check"], entry["resources"], entry["reason"]
        if not isinstance(check, str) or not CHECK_ID.match(check):
            fail(f"{where}: check {check!r} is not a checkov id (CKV_AWS_123)")
        if not isinstance(resources, list) or not resources:
            fail(f"{where}: resources must list the logical ids the skip is for")
        if not isinstance(reason, str) or len(reason.split()) < 5:
            fail(f"{where}: give the reason ({check})")
        for resource in resources:
            if not isinstance(resource, str) or not LOGICAL_ID.match(resource):
                fail(f"{where}: {resource!r} is not a logical id")
            if (check, resource) in skips:
                fail(f"{where}: {check} on {resource} is listed twice")
            skips[(check, resource)] = reason
    return skips


def logical_id(resource: str) -> str:
    # checkov names a resource TYPE.LOGICAL_ID (AWS::Serverless::Function.GrantFunction); logical
    # ids have no dot.
    return resource.rsplit(".", 1)[-1]


def main() -> None:
    if len(sys.argv) != 3:
        fail("usage: checkov_gate.py REPORT.json SKIPS.yaml")
    report_path, skips_path = sys.argv[1:]
    report, skips = load_report(report_path), load_skips(skips_path)
    results, summary = report["results"], report["summary"]

    inline = results.get("skipped_checks") or []
    for s in inline:
        print(f"skip in the template itself: {s['check_id']} on {s['resource']}: move it to {skips_path}", file=sys.stderr)

    failed = {}
    for finding in results.get("failed_checks") or []:
        failed.setdefault((finding["check_id"], logical_id(finding["resource"])), finding)

    unlisted = [failed[key] for key in sorted(failed) if key not in skips]
    # A check silenced in the template still fires: its entry here is not stale (the inline skip is the error).
    silenced = {(s["check_id"], logical_id(s["resource"])) for s in inline}
    stale = [key for key in sorted(skips) if key not in failed and key not in silenced]

    print(
        f"checkov {summary.get('checkov_version')}: {summary['passed']} passed, {summary['failed']} failed "
        f"({len(failed) - len(unlisted)} skipped, each with its reason in {skips_path})"
    )
    for finding in unlisted:
        first, last = finding.get("file_line_range") or ["?", "?"]
        print(
            f"FAILED {finding['check_id']} {finding['check_name']}\n"
            f"    {finding['resource']} ({finding['file_path'].lstrip('/')}:{first}-{last})"
            + (f"\n    {finding['guideline']}" if finding.get("guideline") else ""),
            file=sys.stderr,
        )
    for check, resource in stale:
        print(f"STALE SKIP {check} on {resource}: it passes (or is gone); delete it from {skips_path}", file=sys.stderr)

    if unlisted or stale or inline:
        fail(
            f"{len(unlisted)} finding(s) to fix or to list with a reason, {len(stale)} stale skip(s), "
            f"{len(inline)} skip(s) in the template"
        )


if __name__ == "__main__":
    main()
