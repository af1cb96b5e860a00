#!/usr/bin/env python3
"""The Helm chart, rendered by tests/chart/render (Go text/template + sprig,
as Helm renders) for the default values and with every switch turned, and
checked object by object: the DaemonSet's capabilities, mounts, probes and
env; RBAC per auth mode; the ServiceMonitor only where asked or served; the
dashboard ConfigMap; and the rendered agent configuration accepted by
`pwru-agent --check-config`.

Usage: chart_test.py REPO_ROOT PWRU_AGENT_BINARY WORKDIR
Prints one closing line: PASS, or FAIL with what differed.
"""

import json
import os
import subprocess
import sys

import yaml

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


def render(values=None, api_versions=None, ok=True):
    """The rendered objects as {(kind, name): object}; or, with ok=False, the error text."""
    args = [RENDER]
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
    objects = {}
    for doc in yaml.safe_load_all(p.stdout):
        if doc:
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


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

    # Refusals that say what to do.
    err = render({"traces": {"auth": "none"}}, ok=False)
    check("traces.auth none is refused" in err, "traces.auth none", "refused with the reason", err)
    err = render({"traces": {"auth": "token"}}, ok=False)
    check("traces.tokenSecret names the Secret" in err, "token auth without a Secret", "refused with the reason", err)
    return "defaults, ServiceMonitor auto/on/off, every switch, two refusals; agent accepts both configurations"


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
