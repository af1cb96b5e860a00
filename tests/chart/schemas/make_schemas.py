#!/usr/bin/env python3
"""Makes kubernetes.json, the Kubernetes API schemas the chart test validates
rendered objects against: every OpenAPI definition reachable from the kinds
the chart renders, taken from the Kubernetes OpenAPI v2 document, plus the
ServiceMonitor and PrometheusRule CRDs' openAPIV3Schema from
prometheus-operator. Descriptions
are dropped (they are 80 % of the bytes); nothing else is changed here. The
strictness the API server adds (unknown fields refused, int-or-string,
quantities) is applied by k8s_schema.py when it loads the file, so this
file stays a plain copy of upstream facts.

Made from:
  kubernetes-client/python 024658493d124f046fc0a9827a2a3165cf2aee28
    kubernetes/swagger.json.unprocessed (KUBERNETES_BRANCH release-1.36)
  prometheus-operator/prometheus-operator 6adcebc5076c34f4f55f8f5f7b1e528929373ac7 (v0.93.0+)
    example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
  prometheus-operator/prometheus-operator 01fad0d64bee2ea20ff20200b86fc0f4ae2744d3 (v0.82.2)
    example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml

Usage: make_schemas.py SWAGGER_JSON CRD_YAML... > kubernetes.json
"""

import json
import sys

import yaml

KINDS = [
    "io.k8s.api.apps.v1.DaemonSet",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.rbac.v1.ClusterRole",
    "io.k8s.api.rbac.v1.ClusterRoleBinding",
]


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"].rsplit("/", 1)[1]
        for v in node.values():
            yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def crd_definition(crd_path):
    """(definition name, the v1 schema) of a CRD, named as the API server's OpenAPI names it."""
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = strip(version["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema["x-kubernetes-group-version-kind"] = [{"group": group, "version": "v1", "kind": kind}]
    return ".".join(reversed(group.split("."))) + f".v1.{kind}", schema


def main(swagger_path, *crd_paths):
    with open(swagger_path) as f:
        definitions = json.load(f)["definitions"]
    keep, todo = {}, list(KINDS)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep[name] = strip(definitions[name])
            todo.extend(refs(keep[name]))
    kinds = list(KINDS)
    for path in crd_paths:
        name, schema = crd_definition(path)
        keep[name] = schema
        kinds.append(name)
    json.dump({"kinds": kinds, "definitions": dict(sorted(keep.items()))}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
