#!/usr/bin/env python3
"""The Helm chart, rendered by tests/chart/render (Go text/template + sprig,
as Helm renders) for the default values and with every switch turned, and
checked object by object: the DaemonSet's capabilities, mounts, probes and
env; RBAC per auth mode; the ServiceMonitor only where asked or served; the
dashboard ConfigMap; the rendered agent configuration accepted by
`pwru-agent --check-config`; every rendered object valid against the
Kubernetes API schemas (k8s_schema.py, strict as `kubectl apply`), with
broken objects as controls that the validator refuses; values refused by
values.schema.json with Helm's message; and NOTES.txt's trace `curl`.

Usage: chart_test.py REPO_ROOT PWRU_AGENT_BINARY WORKDIR
Prints one closing line: PASS, or FAIL with what differed.
"""

import copy
import json
import os
import re
import shlex
import subprocess
import sys

import yaml

from k8s_schema import KubernetesSchemas

ROOT, AGENT, WORK = sys.argv[1:4]
CHART = os.path.join(ROOT, "charts", "pwru-agent")
RENDER = os.path.join(WORK, "render")
CAPABILITIES = ["BPF", "PERFMON", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"]
HOST_MOUNTS = {"/sys/kernel/btf": "/sys/kernel/btf", "/sys/kernel/tracing": "/sys/kernel/tracing",
               "/sys/kernel/debug": "/sys/kernel/debug", "/sys/fs/cgroup": "/sys/fs/cgroup",
               "/sys/fs/bpf": "/sys/fs/bpf", "/host/proc": "/proc"}


class Failure(Exception):
    pass


def check(cond, what, expected, seen):
    if not cond:
        raise Failure(f"{what}\n  expected: {expected}\n  seen:     {seen}")


SCHEMAS = KubernetesSchemas()
VALIDATED = []  # (kind, name) of every object checked against the schemas


def render(values=None, api_versions=None, ok=True, notes=False):
    """The rendered objects as {(kind, name): object}, each checked against
    the Kubernetes API schemas; with ok=False, the error text; with notes,
    the rendered NOTES.txt."""
    args = [RENDER] + (["-notes"] if notes else [])
    if values is not None:
        path = os.path.join(WORK, f"values-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(values, f)
        args += ["-f", path]
    if api_versions:
        args += ["-api-versions", ",".join(api_versions)]
    args.append(CHART)  # after the flags: Go's flag package stops at the first argument
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if not ok:
        check(p.returncode != 0, f"rendering with {values}", "a refusal", p.stdout.decode()[:300])
        return p.stderr.decode()
    check(p.returncode == 0, f"rendering with {values}", "success", p.stderr.decode())
    if notes:
        return p.stdout.decode()
    objects = {}
    for doc in yaml.safe_load_all(p.stdout):
        if doc:
            key = (doc["kind"], doc["metadata"]["name"])
            check(key not in objects, f"rendering with {values}", "one object per kind and name", f"{key} twice")
            problems = SCHEMAS.problems(doc)
            check(not problems, f"{key[0]} {key[1]} (values {values}, APIs {api_versions}) against the Kubernetes "
                  "API schemas", "valid", "\n    ".join(problems))
            VALIDATED.append(key)
            objects[key] = doc
    return objects


def validator_controls(objects):
    """Broken copies of rendered objects that the schema check must refuse:
    proof that the validation above can fail."""
    def broken(kind, name, mutate, expect):
        obj = copy.deepcopy(objects[(kind, name)])
        mutate(obj)
        problems = SCHEMAS.problems(obj)
        check(any(expect in p for p in problems), f"validator control on {kind}: {expect}", "refused",
              problems or "accepted")

    def agent(ds):
        return ds["spec"]["template"]["spec"]["containers"][0]

    broken("DaemonSet", "pwru-agent", lambda o: agent(o).update(imagePullPolcy="Always"), "imagePullPolcy")
    broken("DaemonSet", "pwru-agent", lambda o: agent(o)["ports"][0].update(containerPort="9464"), "integer")
    broken("DaemonSet", "pwru-agent", lambda o: agent(o)["resources"]["limits"].update(memory="256 Mi"),
           "limits.memory")
    broken("DaemonSet", "pwru-agent", lambda o: agent(o)["env"].append(dict(agent(o)["env"][0])), "duplicate")
    broken("DaemonSet", "pwru-agent", lambda o: o["spec"]["selector"]["matchLabels"].update(tier="x"),
           "does not select")
    broken("DaemonSet", "pwru-agent", lambda o: agent(o)["volumeMounts"].append({"name": "x", "mountPath": "/x"}),
           "names no volume")
    broken("DaemonSet", "pwru-agent", lambda o: agent(o)["ports"][0].update(name="metrics-and-traces"),
           "IANA service name")
    broken("ConfigMap", "pwru-agent-dashboard", lambda o: o["metadata"]["labels"].update(grafana_dashboard=1),
           "not of type 'string'")
    broken("ClusterRole", "pwru-agent", lambda o: o["rules"][0].update(verb=["get"]), "'verb' was unexpected")
    broken("Service", "pwru-agent", lambda o: o["spec"]["ports"][0].update(port="http"), "integer")
    broken("ServiceMonitor", "pwru-agent", lambda o: o["spec"]["endpoints"][0].update(intervall="30s"),
           "'intervall' was unexpected")


def notes_checks(notes, auth):
    """NOTES.txt must print a trace curl that works as printed: the trace
    route on the chart's port, streaming (-N), a JSON body the trace API
    takes, and a token obtained the way the auth mode wants."""
    curls = [line.strip() for line in notes.splitlines() if line.strip().startswith("curl -N")]
    check(len(curls) == 1, f"NOTES.txt ({auth})", "one streaming trace curl", notes)
    argv = shlex.split(curls[0])
    body = json.loads(argv[argv.index("-d") + 1])
    check(set(body) <= {"namespace", "pod", "filter", "duration"} and body.get("pod") and body.get("namespace"),
          "NOTES.txt trace body", "a pod-scoped request", body)
    check(argv[-1] == "http://127.0.0.1:9464/v1/traces" and "Authorization: Bearer $TOKEN" in argv,
          "NOTES.txt trace URL and header", "port-forwarded /v1/traces with the bearer token", argv)
    check("port-forward service/pwru-agent 9464:9464" in notes, "NOTES.txt port-forward", "to the Service", notes)
    token = re.search(r"^\s*TOKEN=\$\((.*)\)$", notes, re.M)
    want = "create token" if auth == "kubernetes" else "get secret pwru-trace-token"
    check(token and want in token.group(1), f"NOTES.txt token ({auth})", want, token and token.group(1))


def agent_accepts(objects, what):
    config = objects[("ConfigMap", "pwru-agent")]["data"]["pwru-agent.yaml"]
    path = os.path.join(WORK, "agent.yaml")
    with open(path, "w") as f:
        f.write(config)
    p = subprocess.run([AGENT, "--check-config", "--config", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    check(p.returncode == 0, f"pwru-agent --check-config on the rendered configuration ({what})", "exit 0",
          f"exit {p.returncode}: {p.stdout.decode()}\n{config}")
    return yaml.safe_load(config)


def daemonset_checks(objects):
    ds = objects[("DaemonSet", "pwru-agent")]
    pod = ds["spec"]["template"]["spec"]
    check(pod["hostPID"] is True and pod["hostNetwork"] is True, "hostPID and hostNetwork", "both true", pod)
    check(pod["priorityClassName"] == "system-node-critical", "priorityClassName", "system-node-critical",
          pod["priorityClassName"])
    check(pod["terminationGracePeriodSeconds"] >= 63, "terminationGracePeriodSeconds",
          ">= 63 s (the slowest kprobe detach measured)", pod["terminationGracePeriodSeconds"])
    check({"operator": "Exists"} in pod["tolerations"], "tolerations", "every taint", pod["tolerations"])
    check(ds["spec"]["updateStrategy"]["type"] == "RollingUpdate", "update strategy", "RollingUpdate",
          ds["spec"]["updateStrategy"])
    check(pod["serviceAccountName"] == "pwru-agent", "service account", "pwru-agent", pod["serviceAccountName"])
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    check(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", "NODE_NAME",
          "from spec.nodeName", env.get("NODE_NAME"))
    check(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", "POD_NAMESPACE",
          "from metadata.namespace", env.get("POD_NAMESPACE"))
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, "liveness probe", "/healthz",
          c["livenessProbe"])
    check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, "readiness probe", "/readyz",
          c["readinessProbe"])
    check(c["ports"][0]["name"] == "http" and c["ports"][0]["containerPort"] == 9464, "container port",
          "http 9464 (relaying agents look for the port named http)", c["ports"])
    check(c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"], "resources",
          "requests and a memory limit", c["resources"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for mount_path, host_path in HOST_MOUNTS.items():
        check(mount_path in mounts and mounts[mount_path]["readOnly"] is True, f"mount {mount_path}",
              "read-only", mounts.get(mount_path))
        check(volumes[mounts[mount_path]["name"]]["hostPath"]["path"] == host_path, f"host path of {mount_path}",
              host_path, volumes[mounts[mount_path]["name"]])
    check(c["args"] == ["--config", "/etc/pwru-agent/pwru-agent.yaml"], "agent args", "--config from the ConfigMap",
          c["args"])
    return c


def main():
    subprocess.run(["go", "build", "-o", RENDER, "./tests/chart/render"], cwd=ROOT, check=True, timeout=300,
                   env={**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
                        "GOCACHE": os.path.join(WORK, "gocache")})

    # Defaults: capabilities, Kubernetes auth, no ServiceMonitor without its API.
    objects = render()
    c = daemonset_checks(objects)
    sc = c["securityContext"]
    check(sc["privileged"] is False and sc["capabilities"] == {"drop": ["ALL"], "add": CAPABILITIES},
          "securityContext", f"drop ALL, add {CAPABILITIES}", sc)
    validator_controls({**objects, **render(None, ["monitoring.coreos.com/v1"])})
    config = agent_accepts(objects, "defaults")
    check(config["traces"]["auth"] == "kubernetes" and config["http"]["listen"] == "0.0.0.0:9464"
          and config["kubernetes"]["proc_root"] == "/host/proc", "rendered agent configuration",
          "auth kubernetes, listen on all addresses, /host/proc", config)
    rules = objects[("ClusterRole", "pwru-agent")]["rules"]
    check({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]} in rules,
          "ClusterRole", "get/list/watch pods", rules)
    check(any("tokenreviews" in r["resources"] for r in rules)
          and any("subjectaccessreviews" in r["resources"] for r in rules),
          "ClusterRole with auth kubernetes", "create tokenreviews and subjectaccessreviews", rules)
    for role, resource, verbs in (("pod-tracer", "pods/trace", ["create"]),
                                  ("node-tracer", "nodes/trace", ["create", "list", "delete"])):
        rules = objects[("ClusterRole", f"pwru-agent-{role}")]["rules"]
        check(rules == [{"apiGroups": [""], "resources": [resource], "verbs": verbs}], f"ClusterRole {role}",
              f"{verbs} on {resource}, what the agent's SubjectAccessReview asks", rules)
    notes_checks(render(notes=True), "kubernetes")
    binding = objects[("ClusterRoleBinding", "pwru-agent")]
    check(binding["subjects"][0] == {"kind": "ServiceAccount", "name": "pwru-agent", "namespace": "pwru"},
          "ClusterRoleBinding subject", "the chart's service account", binding["subjects"])
    check(("ServiceMonitor", "pwru-agent") not in objects, "ServiceMonitor (auto) without its API",
          "absent", "present")
    service = objects[("Service", "pwru-agent")]
    check(service["spec"]["ports"][0]["name"] == "http", "Service port", "http", service["spec"]["ports"])
    board = objects[("ConfigMap", "pwru-agent-dashboard")]
    with open(os.path.join(CHART, "dashboards", "pwru-agent.json")) as f:
        check(json.loads(board["data"]["pwru-agent.json"]) == json.load(f), "dashboard ConfigMap",
              "the dashboard file, unchanged", "different")
    check(board["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard label", "grafana_dashboard: 1",
          board["metadata"]["labels"])

    # auto with the API served, and forced on.
    for values, apis in ((None, ["monitoring.coreos.com/v1"]), ({"serviceMonitor": {"enabled": True}}, None)):
        sm = render(values, apis).get(("ServiceMonitor", "pwru-agent"))
        check(sm is not None, f"ServiceMonitor with {values or apis}", "present", "absent")
        relabel = sm["spec"]["endpoints"][0]["relabelings"][0]
        check(relabel == {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"},
              "ServiceMonitor relabeling", "the node label the dashboard uses", relabel)
    check(("ServiceMonitor", "pwru-agent") not in render({"serviceMonitor": {"enabled": False}},
                                                          ["monitoring.coreos.com/v1"]),
          "ServiceMonitor switched off", "absent", "present")

    # Every switch the other way.
    turned = {"privileged": True, "traces": {"auth": "token", "tokenSecret": "pwru-trace-token"},
              "dashboard": {"enabled": False}, "port": 9500, "image": {"tag": "test"},
              "config": {"counters": {"drops_max_entries": 65536}, "log": {"format": "json"}}}
    objects = render(turned)
    c = daemonset_checks({**objects, ("DaemonSet", "pwru-agent"): _with_port(objects, 9500)})
    check(c["securityContext"] == {"privileged": True}, "securityContext with privileged", "privileged only",
          c["securityContext"])
    check(c["image"] == "pwru-agent:test", "image", "pwru-agent:test", c["image"])
    config = agent_accepts(objects, "every switch")
    check(config["traces"] == {"auth": "token", "token_file": "/var/run/pwru-agent/token/token"}
          and config["counters"]["drops_max_entries"] == 65536 and config["http"]["listen"] == "0.0.0.0:9500",
          "rendered configuration with token auth, a bigger map, port 9500", "all three", config)
    pod = objects[("DaemonSet", "pwru-agent")]["spec"]["template"]["spec"]
    check({"name": "token", "secret": {"secretName": "pwru-trace-token"}} in pod["volumes"], "token Secret volume",
          "mounted", pod["volumes"])
    rules = objects[("ClusterRole", "pwru-agent")]["rules"]
    check(not any("tokenreviews" in r["resources"] for r in rules), "ClusterRole with token auth",
          "no review rights", rules)
    check(("ConfigMap", "pwru-agent-dashboard") not in objects, "dashboard switched off", "absent", "present")
    check(("ClusterRole", "pwru-agent-pod-tracer") not in objects, "tracer roles with token auth", "absent",
          "present")
    notes_checks(render({**turned, "port": 9464}, notes=True), "token")

    # Refusals that say what to do.
    err = render({"traces": {"auth": "none"}}, ok=False)
    check("traces.auth none is refused" in err, "traces.auth none", "refused with the reason", err)
    err = render({"traces": {"auth": "token"}}, ok=False)
    check("traces.tokenSecret names the Secret" in err, "token auth without a Secret", "refused with the reason", err)

    # values.schema.json, as Helm applies it before rendering.
    for values, expect in (({"port": "9464"}, "- port: Invalid type. Expected: integer, given: string"),
                           ({"imag": {"tag": "x"}}, "Additional property imag is not allowed"),
                           ({"traces": {"auth": "tokn"}}, "traces.auth must be one of the following"),
                           ({"serviceMonitor": {"enabled": "yes"}}, "serviceMonitor.enabled"),
                           ({"resources": {"limits": {"memory": "256 Mi"}}}, "resources.limits.memory"),
                           ({"terminationGracePeriodSeconds": -1}, "terminationGracePeriodSeconds")):
        err = render(values, ok=False)
        check("values don't meet the specifications of the schema(s)" in err and expect in err,
              f"values {values}", f"refused by values.schema.json: {expect}", err)
    return (f"defaults, ServiceMonitor auto/on/off, every switch, two template refusals, 6 schema refusals; "
            f"{len(VALIDATED)} rendered objects valid against the Kubernetes {len(SCHEMAS.kinds())}-kind schemas, "
            f"11 broken controls refused; NOTES for both auth modes; agent accepts both configurations")


def _with_port(objects, port):
    """The DaemonSet with its port as daemonset_checks expects it (9464), after checking it is `port`."""
    ds = json.loads(json.dumps(objects[("DaemonSet", "pwru-agent")]))
    c = ds["spec"]["template"]["spec"]["containers"][0]
    check(c["ports"][0]["containerPort"] == port, "container port", port, c["ports"])
    c["ports"][0]["containerPort"] = 9464
    return ds


if __name__ == "__main__":
    os.makedirs(WORK, exist_ok=True)
    try:
        summary = main()
        print(f"PASS [chart]: {summary}")
    except Failure as f:
        print(f"FAIL [chart]: {f}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print(f"FAIL [chart]: {e}", file=sys.stderr)
        sys.exit(1)
