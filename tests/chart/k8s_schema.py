"""Validates Kubernetes objects as the API server would on `kubectl apply`
(strict field validation, the default since 1.27), offline: the OpenAPI
schemas in schemas/kubernetes.json (see make_schemas.py for where they come
from), plus the object rules the server enforces in code rather than in the
schema, for the fields a DaemonSet chart touches (names, labels, selector,
port names, volume references).

    schemas = KubernetesSchemas()
    for problem in schemas.problems(obj): ...
"""

import json
import os
import re

import jsonschema

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas", "kubernetes.json")

# k8s.io/apimachinery/pkg/api/resource: a number with an optional suffix.
QUANTITY = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# Kinds whose names are DNS-1035 labels (they become DNS names).
DNS1035_NAMED = {"Service"}
# Cluster-scoped kinds; RBAC names may be any path segment.
PATH_SEGMENT_NAMED = {"ClusterRole", "ClusterRoleBinding"}


def _strict(node):
    """The schema as the API server applies it: unknown fields refused,
    int-or-string and quantities accepted in both their forms, list-map keys
    unique."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict(v) for k, v in node.items()}
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        node.pop("format", None)
        node["type"] = ["integer", "string"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        node["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        node["uniqueItems"] = True
    return node


def _unique_map_keys(validator, keys, instance, schema):
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen = set()
    for item in instance:
        if not isinstance(item, dict):
            continue
        key = tuple(json.dumps(item.get(k)) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate entry for list-map keys {keys}: {dict(zip(keys, key))}")
        seen.add(key)


_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator,
                                          {"x-kubernetes-list-map-keys": _unique_map_keys})


class KubernetesSchemas:
    def __init__(self, path=SCHEMAS):
        with open(path) as f:
            doc = json.load(f)
        definitions = _strict(doc["definitions"])
        definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
            "anyOf": [{"type": "number"}, {"type": "string", "pattern": QUANTITY}]}
        self._root = {"definitions": definitions}
        self._by_kind = {}
        for name in doc["kinds"]:
            for gvk in definitions[name]["x-kubernetes-group-version-kind"]:
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                self._by_kind[(api_version, gvk["kind"])] = name

    def kinds(self):
        return sorted(self._by_kind)

    def problems(self, obj):
        """What the API server would refuse in obj, as readable lines ([] if nothing)."""
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in self._by_kind:
            return [f"apiVersion {key[0]} kind {key[1]}: not a kind these schemas know ({self.kinds()})"]
        schema = {"$ref": f"#/definitions/{self._by_kind[key]}", "definitions": self._root["definitions"]}
        found = []
        for e in sorted(_Validator(schema).iter_errors(obj), key=lambda e: list(map(str, e.path))):
            path = ".".join(str(p) for p in e.absolute_path) or "(object)"
            found.append(f"{path}: {e.message}")
        return found + _object_rules(obj)


def _check_name(kind, name):
    if kind in PATH_SEGMENT_NAMED:
        ok = name not in (".", "..") and "/" not in name and "%" not in name
    elif kind in DNS1035_NAMED:
        ok = len(name) <= 63 and DNS1035_LABEL.match(name)
    else:
        ok = len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)
    return [] if ok and name else [f"metadata.name {name!r}: not a valid {kind} name"]


def _check_labels(where, labels):
    found = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or len(name) > 63 or not LABEL_NAME.match(name):
            found.append(f"{where}: label key {key!r} is not a qualified name")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            found.append(f"{where}: label {key}={value!r} is not a valid label value")
    return found


def _port_name_problem(name):
    """IANA_SVC_NAME: what container port names must be (the Service and
    the probes refer to them)."""
    if (len(name) > 15 or not re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", name)
            or "--" in name or not re.search(r"[a-z]", name)):
        return f"port name {name!r} is not an IANA service name (<= 15 of a-z0-9-, a letter, no --)"
    return None


def _object_rules(obj):
    kind, meta = obj.get("kind"), obj.get("metadata", {})
    found = _check_name(kind, meta.get("name", "")) + _check_labels("metadata.labels", meta.get("labels"))
    if kind == "ConfigMap":
        found += [f"data key {k!r} is not a valid ConfigMap key" for k in obj.get("data", {})
                  if not CONFIG_KEY.match(k)]
    if kind == "DaemonSet":
        spec = obj.get("spec", {})
        template_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        found += _check_labels("spec.template.metadata.labels", template_labels)
        selector = spec.get("selector", {}).get("matchLabels", {})
        if not selector or any(template_labels.get(k) != v for k, v in selector.items()):
            found.append(f"spec.selector {selector} does not select the template's labels {template_labels}")
        found += _pod_rules(spec.get("template", {}).get("spec", {}))
    if kind == "Service":
        for port in obj.get("spec", {}).get("ports", []):
            if len(obj["spec"]["ports"]) > 1 and not port.get("name"):
                found.append("spec.ports: every port needs a name when there are several")
            if isinstance(port.get("targetPort"), str) and _port_name_problem(port["targetPort"]):
                found.append(f"spec.ports.targetPort: {_port_name_problem(port['targetPort'])}")
    return found


def _pod_rules(pod):
    found = []
    volumes = [v.get("name", "") for v in pod.get("volumes", [])]
    found += [f"volume name {v!r} is not a DNS-1123 label" for v in volumes if not DNS1123_LABEL.match(v)]
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        where = f"container {c.get('name')!r}"
        if not DNS1123_LABEL.match(c.get("name", "")):
            found.append(f"{where}: name is not a DNS-1123 label")
        ports = [p["name"] for p in c.get("ports", []) if "name" in p]
        found += [f"{where}: {_port_name_problem(n)}" for n in ports if _port_name_problem(n)]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in ports:
                found.append(f"{where}: {probe} names port {port!r}, which the container does not declare")
        found += [f"{where}: volumeMount {m.get('name')!r} names no volume" for m in c.get("volumeMounts", [])
                  if m.get("name") not in volumes]
        found += [f"{where}: env name {e.get('name')!r} is not valid" for e in c.get("env", [])
                  if not ENV_NAME.match(e.get("name", ""))]
    return found
