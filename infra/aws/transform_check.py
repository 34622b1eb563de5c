"""Transforms the SAM template offline (samtranslator, no AWS call) and writes the plain CloudFormation it
becomes, so `cfn-lint` checks what CloudFormation would receive: event source mappings with their batch
sizes, windows and scaling, the functions' generated roles and permissions, the schedule's role.

    python infra/aws/transform_check.py infra/aws/template.yaml OUT.json
"""
import json
import os
import sys

import yaml
from samtranslator.translator.transform import transform


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short intrinsic tags (!Ref, !Sub, !GetAtt ...) as their long form."""


def _intrinsic(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


class NoManagedPolicies:
    """The template names no AWS managed policy, so the translator needs no IAM lookup."""

    def load(self):
        return {}


def main(src, out):
    # The translator fills pseudo parameters (region, partition) from a boto session: no call is made.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(src) as f:
        template = yaml.load(f, Loader=CfnLoader)
    # Local CodeUri folders are uploaded by `sam build/deploy`; the translator wants S3 locations.
    for name, res in template["Resources"].items():
        if res.get("Type") == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = f"s3://artifacts/{name}.zip"
    cfn = transform(template, {}, NoManagedPolicies())
    with open(out, "w") as f:
        json.dump(cfn, f, indent=1)
    kinds = sorted({r["Type"] for r in cfn["Resources"].values()})
    print(f"{src}: {len(cfn['Resources'])} resources after the SAM transform: {', '.join(kinds)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
