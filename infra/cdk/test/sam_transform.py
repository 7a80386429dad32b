"""Prints infra/template.yaml after SAM's transform, as plain CloudFormation JSON.

The transform is samtranslator's, the library `sam validate`, `sam deploy` and CloudFormation's
AWS::Serverless transform use; it runs offline (no AWS account, no call). Run with the SAM venv's
python (scripts/lib.sh ensure_sam_venv): `.venv-sam/bin/python infra/cdk/test/sam_transform.py
[infra/template.yaml]`. test/equivalence.test.ts compares its output with the CDK app's template.
"""

import json
import os
import sys
from pathlib import Path

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no AWS managed policy (every function has its own role), so the
    translator needs no map of them; `sam validate` would ask IAM for one."""

    def load(self):
        return {}


def main() -> None:
    # The translator resolves AWS::Region for ARNs it builds; none of ours depends on its value.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "template.yaml"
    template = yaml_parse(path.read_text())
    # What `sam package` does before CloudFormation sees the template: local code becomes an S3
    # object. The code's location is not compared (the CDK app's is an asset of its own).
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://sam-package-bucket/code.zip"
    print(json.dumps(transform(template, {}, NoManagedPolicies()), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
