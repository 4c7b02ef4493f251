#!/usr/bin/env python3
"""Lints the chart the way `helm lint --strict` does, through the Helm library that the
helm-sdkpy package bundles, once with the default values and once per values file given:
each values set is merged over values.yaml, checked against values.schema.json, and
linted; any message of warning severity or worse fails (strict). Also checks that every
path the Dockerfile copies exists, and that the chart's list of gRPC services (the
iqs.grpcServices helper: health probes and Ingress paths) names exactly the services the
protos under proto/iqs declare, each under the deployment of its package."""

import asyncio
import copy
import json
import pathlib
import re
import shutil
import sys
import tempfile

import jsonschema
import yaml
from helm_sdkpy import Configuration, Lint

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "iqs"
# helm's support.Severity: 0 unknown, 1 info, 2 warning, 3 error.
WARNING = 2
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def merge(base, override):
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def lint(values, label):
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(values, schema)
    with tempfile.TemporaryDirectory() as tmp:
        chart = pathlib.Path(tmp) / "iqs"
        shutil.copytree(CHART, chart)
        (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        result = asyncio.run(Lint(Configuration()).run(str(chart)))
    problems = [m for m in result.get("Messages") or [] if m.get("Severity", 0) >= WARNING]
    problems += [{"Severity": 3, "Path": "", "Err": e} for e in result.get("Errors") or []]
    for message in problems:
        print(f"{label}: {SEVERITY.get(message['Severity'])} {message.get('Path')}: {message.get('Err')}")
    print(f"{label}: {'FAILED' if problems else 'ok'} ({len(result.get('Messages') or [])} messages, none of warning severity or worse)"
          if not problems else f"{label}: FAILED")
    return not problems


def dockerfile_paths_exist():
    missing = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            for source in words[1:-1]:
                if not (ROOT / source).exists():
                    missing.append(source)
    for source in missing:
        print(f"Dockerfile: COPY {source}: no such path")
    print(f"Dockerfile: {'FAILED' if missing else 'ok'} (every copied path exists)")
    return not missing


NOT_SERVED = {"iqs.bench.v1", "iqs.autoqa.v1"}
# Packages served by a deployment other than the one of their name: webhooks are
# delivered where evaluations are written.
SERVED_BY = {"iqs.integration.v1": "evaluation"}


def grpc_services_match_protos():
    """The helper's names, by deployment, against `package iqs.<name>.v1` + `service X`
    in the protos. Served by no deployment: iqs.bench.v1 (the load tester's own) and
    iqs.autoqa.v1 (external scorers, which IQS calls)."""
    declared = set()
    for proto in sorted((ROOT / "proto" / "iqs").rglob("*.proto")):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M)
        services = re.findall(r"^service\s+(\w+)", text, re.M)
        if package and package.group(1) not in NOT_SERVED:
            declared |= {f"{package.group(1)}.{service}" for service in services}
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    block = re.search(r'define "iqs.grpcServices".*?\{\{- end', helpers, re.S)
    listed, misplaced = set(), []
    if block:
        for deployment, names in re.findall(r'"(\w+)" \(list((?:\s+"[\w.]+")+)\s*\)', block.group(0)):
            for name in re.findall(r'"([\w.]+)"', names):
                listed.add(name)
                package = name.rsplit(".", 1)[0]
                if SERVED_BY.get(package, package.split(".")[1]) != deployment:
                    misplaced.append(f"{name} under {deployment}")
    problems = [f"{name}: declared in proto/ but not in iqs.grpcServices" for name in sorted(declared - listed)]
    problems += [f"{name}: in iqs.grpcServices but declared in no proto" for name in sorted(listed - declared)]
    problems += [f"{entry}: not that deployment's package" for entry in misplaced]
    for problem in problems:
        print(f"gRPC services: {problem}")
    ok = bool(listed) and not problems
    print(f"gRPC services: {'ok' if ok else 'FAILED'} ({len(listed)} in the chart, {len(declared)} in proto/)")
    return ok


def main():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    ok = lint(defaults, "default values")
    for path in sys.argv[1:]:
        ok &= lint(merge(defaults, yaml.safe_load(pathlib.Path(path).read_text())), path)
    ok &= dockerfile_paths_exist()
    ok &= grpc_services_match_protos()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
