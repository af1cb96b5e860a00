#!/usr/bin/env python3
"""The Helm chart, rendered by tests/chart/render (Go text/template + sprig,
as Helm renders) for the default values and with every switch turned, and
checked object by object: the DaemonSet's capabilities, mounts, probes and
env; RBAC per auth mode; the ServiceMonitor only where asked or served; the
dashboard ConfigMap; the rendered agent configuration accepted by
`pwru-agent --check-config`; every rendered object valid against the
Kubernetes API schemas (k8s_schema.py, strict as `kubectl apply`), with
broken objects as controls that the validator refuses; values refused by
values.schema.json with Helm's message; NOTES.txt's trace `curl`; and the
agents' mutual TLS: the Secret the chart makes (a CA and a certificate that
complete a mutual TLS handshake as the agents do it), kept across upgrades
through lookup, mounted, and the peer port opened.

Usage: chart_test.py REPO_ROOT PWRU_AGENT_BINARY WORKDIR
Prints one closing line: PASS, or FAIL with what differed.
"""

import base64
import copy
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading

import yaml

from k8s_schema import KubernetesSchemas

ROOT, AGENT, WORK = sys.argv[1:4]
CHART = os.path.join(ROOT, "charts", "pwru-agent")
RENDER = os.path.join(WORK, "render")
# The default release's alert rules as a Prometheus rules file, for e2e/agent_e2e.py.
RULES_FILE = os.path.join(WORK, "pwru-agent-rules.yaml")
CAPABILITIES = ["BPF", "PERFMON", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_RESOURCE", "SYSLOG"]
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


def render(values=None, api_versions=None, ok=True, notes=False, cluster=None, release=None, namespace=None):
    """The rendered objects as {(kind, name): object}, each checked against
    the Kubernetes API schemas; with ok=False, the error text; with notes,
    the rendered NOTES.txt. `cluster`: objects already in the cluster, for
    the chart's lookup (an upgrade); None: a first install. `release` and
    `namespace`: the release's (default pwru-agent in pwru)."""
    args = [RENDER] + (["-notes"] if notes else [])
    args += ["-name", release] if release else []
    args += ["-namespace", namespace] if namespace else []
    if cluster is not None:
        path = os.path.join(WORK, f"cluster-{abs(hash(json.dumps(cluster, sort_keys=True)))}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(cluster, f)
        args += ["-cluster", path]
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
    check("priorityClassName" not in pod, "priorityClassName by default",
          "none (system-node-critical is refused outside kube-system on GKE)", pod.get("priorityClassName"))
    check(pod.get("nodeSelector") == {"kubernetes.io/os": "linux"}, "nodeSelector by default",
          "kubernetes.io/os: linux", pod.get("nodeSelector"))
    check(not {"affinity", "imagePullSecrets"} & set(pod), "affinity and imagePullSecrets by default", "absent",
          sorted(pod))
    check(pod["tolerations"] == [{"operator": "Exists"}], "tolerations by default", "every taint", pod["tolerations"])
    check(ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
          "updateStrategy by default", "RollingUpdate, one agent at a time", ds["spec"]["updateStrategy"])
    meta = ds["spec"]["template"]["metadata"]
    check(meta["labels"] == ds["spec"]["selector"]["matchLabels"] and list(meta["annotations"]) == ["checksum/config"],
          "pod labels and annotations by default", "the selector labels and checksum/config only", meta)
    check(pod["terminationGracePeriodSeconds"] >= 63, "terminationGracePeriodSeconds",
          ">= 63 s (the slowest kprobe detach measured)", pod["terminationGracePeriodSeconds"])
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
    check([e["name"] for e in c["env"]] == ["NODE_NAME", "POD_NAMESPACE"], "env by default",
          "NODE_NAME and POD_NAMESPACE only", c["env"])
    return c

PEER_DIR = "/var/run/pwru-agent/peer-tls"
PEER_NAME = "pwru-agent-peer"
PEER_SECRET = ("Secret", "pwru-agent-peer-tls")


def peer_checks(objects, config, secret_name="pwru-agent-peer-tls", port=9465):
    """The DaemonSet opens the peer port, mounts the Secret where the
    configuration reads its files, and the configuration relays only to
    this release's DaemonSet."""
    pod = objects[("DaemonSet", "pwru-agent")]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    ports = {p["name"]: p for p in c["ports"]}
    check(ports.get("peer") == {"name": "peer", "containerPort": port, "protocol": "TCP"}, "peer container port",
          f"peer {port} (relaying agents look for the port named peer)", c["ports"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    mount = mounts.get(PEER_DIR)
    check(mount and mount["readOnly"] is True, f"mount {PEER_DIR}", "read-only", mount)
    check(volumes[mount["name"]].get("secret") == {"secretName": secret_name, "defaultMode": 0o400},
          "peer TLS volume", f"Secret {secret_name}, files 0400", volumes[mount["name"]])
    traces = config["traces"]
    check(traces["peer_port"] == port and traces["peer_daemonset"] == "pwru-agent"
          and traces["peer_selector"] == "app.kubernetes.io/name=pwru-agent,app.kubernetes.io/instance=pwru-agent"
          and traces["peer_tls"] == {"ca_file": f"{PEER_DIR}/ca.crt", "cert_file": f"{PEER_DIR}/tls.crt",
                                     "key_file": f"{PEER_DIR}/tls.key", "name": PEER_NAME}
          and traces.get("forward", True) is True,
          "rendered relay configuration", f"peer port {port}, DaemonSet pwru-agent, the mounted files", traces)


def secret_files(secret, label):
    """The Secret's ca.crt, tls.crt and tls.key written to WORK/label/: their paths."""
    d = os.path.join(WORK, label)
    os.makedirs(d, exist_ok=True)
    paths = {}
    for key in ("ca.crt", "tls.crt", "tls.key"):
        check(secret["data"].get(key), f"{label} Secret key {key}", "present, not empty", sorted(secret["data"]))
        paths[key] = os.path.join(d, key)
        with open(paths[key], "wb") as f:
            f.write(base64.b64decode(secret["data"][key]))
    return paths


def mutual_tls(server_files, client_files, name=PEER_NAME):
    """A mutual TLS handshake as two agents make it (both present their
    certificate, each requires the other's, signed by its CA and naming
    `name`): None when it completed, else why not."""
    def context(files, side):
        ctx = ssl.SSLContext(side)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(files["tls.crt"], files["tls.key"])
        ctx.load_verify_locations(files["ca.crt"])
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    server_ctx = context(server_files, ssl.PROTOCOL_TLS_SERVER)
    client_ctx = context(client_files, ssl.PROTOCOL_TLS_CLIENT)
    listener = socket.create_server(("127.0.0.1", 0))
    seen = {}

    def serve():
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                cert = tls.getpeercert()
                seen["client_names"] = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as e:
            seen["server_error"] = repr(e)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=name) as tls:
                if tls.recv(2) != b"ok":
                    return "the server hung up after the handshake"
    except (OSError, ssl.SSLError) as e:
        return f"client: {e!r}"
    finally:
        thread.join(10)
        listener.close()
    if "server_error" in seen:
        return "server: " + seen["server_error"]
    if name not in seen.get("client_names", []):
        return f"the client certificate names {seen.get('client_names')}, not {name}"
    return None


def peer_secret_checks(objects):
    """The Secret a first install makes, and an upgrade keeps."""
    secret = objects.get(PEER_SECRET)
    check(secret is not None, "the agents' TLS Secret on a first install", "made by the chart", sorted(objects))
    check(secret["type"] == "kubernetes.io/tls" and secret["metadata"]["namespace"] == "pwru",
          "the agents' TLS Secret", "type kubernetes.io/tls in the release namespace", secret["metadata"])
    files = secret_files(secret, "install")
    cert = subprocess.run(["openssl", "x509", "-in", files["tls.crt"], "-noout", "-ext",
                           "subjectAltName,extendedKeyUsage,basicConstraints"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout.decode()
    check(f"DNS:{PEER_NAME}" in cert and "TLS Web Server Authentication" in cert
          and "TLS Web Client Authentication" in cert and "CA:FALSE" in cert, "the agents' certificate",
          f"DNS:{PEER_NAME}, server and client auth, not a CA", cert)
    for purpose in ("sslserver", "sslclient"):
        v = subprocess.run(["openssl", "verify", "-CAfile", files["ca.crt"], "-purpose", purpose,
                            "-verify_hostname", PEER_NAME, files["tls.crt"]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        check(v.returncode == 0, f"openssl verify -purpose {purpose} of the chart's certificate",
              "OK against the chart's CA", v.stdout.decode())
    why = mutual_tls(files, files)
    check(why is None, "two agents' mutual TLS with the chart's Secret", "a completed handshake", why)

    # A second install (or helm template) makes another CA: without lookup
    # an upgrade would do the same, and agents of two revisions would
    # refuse each other during the rolling update.
    other = secret_files(render()[PEER_SECRET], "reinstall")
    check(open(other["ca.crt"]).read() != open(files["ca.crt"]).read(), "a second first-install",
          "a CA of its own (the control for the upgrade below)", "the same CA")
    why = mutual_tls(files, other)
    check(why is not None, "an agent of another install's CA", "refused at the handshake", "accepted")

    # An upgrade finds the Secret in the cluster and keeps it, byte for byte.
    in_cluster = copy.deepcopy(secret)
    in_cluster["metadata"]["resourceVersion"] = "4711"
    unrelated = copy.deepcopy(secret)
    unrelated["metadata"]["namespace"] = "elsewhere"
    unrelated["data"] = {k: base64.b64encode(b"not this one").decode() for k in secret["data"]}
    upgraded = render(cluster=[unrelated, in_cluster])
    check(upgraded[PEER_SECRET]["data"] == secret["data"], "the agents' TLS Secret after an upgrade",
          "the one in the cluster, unchanged", "new data")
    check(upgraded[("DaemonSet", "pwru-agent")]["spec"]["template"]["metadata"]["annotations"]
          == objects[("DaemonSet", "pwru-agent")]["spec"]["template"]["metadata"]["annotations"],
          "the pod template's annotations after an upgrade", "unchanged (no needless roll of the agents)",
          upgraded[("DaemonSet", "pwru-agent")]["spec"]["template"]["metadata"]["annotations"])
    # A Secret someone emptied is made anew rather than kept broken.
    broken = copy.deepcopy(secret)
    del broken["data"]["tls.key"]
    remade = render(cluster=[broken])[PEER_SECRET]["data"]
    check(set(remade) == {"ca.crt", "tls.crt", "tls.key"} and remade["ca.crt"] != secret["data"]["ca.crt"],
          "an upgrade finding the Secret without tls.key", "a new, complete Secret", sorted(remade))


def peer_switch_checks():
    """tlsSecret (the operator's own Secret), relay switched off, and the refusals."""
    objects = render({"traces": {"peer": {"tlsSecret": "agents-mtls", "port": 9999, "name": "agents.example"}}})
    check(PEER_SECRET not in objects and not any(k[0] == "Secret" for k in objects),
          "with traces.peer.tlsSecret", "no Secret made by the chart", sorted(objects))
    config = agent_accepts(objects, "own peer Secret")
    check(config["traces"]["peer_tls"]["name"] == "agents.example", "peer name with tlsSecret", "agents.example",
          config["traces"]["peer_tls"])
    peer_checks(objects, {**config, "traces": {**config["traces"],
                                               "peer_tls": {**config["traces"]["peer_tls"], "name": PEER_NAME}}},
                secret_name="agents-mtls", port=9999)

    objects = render({"traces": {"peer": {"enabled": False}}})
    c = objects[("DaemonSet", "pwru-agent")]["spec"]["template"]["spec"]["containers"][0]
    check([p["name"] for p in c["ports"]] == ["http"] and PEER_DIR not in {m["mountPath"] for m in c["volumeMounts"]}
          and PEER_SECRET not in objects, "traces.peer.enabled false", "no peer port, no Secret, nothing mounted",
          (c["ports"], c["volumeMounts"]))
    config = agent_accepts(objects, "relay off")
    check(config["traces"].get("forward") is False and "peer_tls" not in config["traces"],
          "configuration with traces.peer.enabled false", "forward: false, no peer_tls", config["traces"])

    err = render({"port": 9465}, ok=False)
    check("traces.peer.port 9465 is the HTTP port too" in err, "peer port = HTTP port", "refused with the reason",
          err)
    for values, expect in (({"traces": {"peer": {"name": "Not_A_DNS_Name"}}}, "traces.peer.name"),
                           ({"traces": {"peer": {"port": 0}}}, "traces.peer.port"),
                           ({"traces": {"peer": {"tls": "x"}}}, "Additional property tls is not allowed")):
        err = render(values, ok=False)
        check("values don't meet the specifications of the schema(s)" in err and expect in err,
              f"values {values}", f"refused by values.schema.json: {expect}", err)


DS = ("DaemonSet", "pwru-agent")
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


def schema_refused(values, expect):
    err = render(values, ok=False)
    check("values don't meet the specifications of the schema(s)" in err and expect in err,
          f"values {values}", f"refused by values.schema.json: {expect}", err)


def template_refused(values, expect):
    err = render(values, ok=False)
    check(expect in err and "values don't meet" not in err, f"values {values}",
          f"refused by the chart: {expect}", err)


PLACEMENT_SCHEMA_REFUSALS = (
    ({"priorityClassName": 5}, "- priorityClassName: Invalid type. Expected: string, given: integer"),
    ({"priorityClassName": "System Node Critical"}, "- priorityClassName: Does not match pattern"),
    ({"nodeSelector": {"pool": 1}}, "- nodeSelector.pool: Invalid type. Expected: string, given: integer"),
    ({"nodeSelector": ["kubernetes.io/os=linux"]}, "- nodeSelector: Invalid type. Expected: object, given: array"),
    ({"affinity": {"nodeAfinity": {}}}, "- affinity: Additional property nodeAfinity is not allowed"),
    ({"affinity": []}, "- affinity: Invalid type. Expected: object, given: array"),
    ({"tolerations": {"operator": "Exists"}}, "- tolerations: Invalid type. Expected: array, given: object"),
    ({"tolerations": [{"operator": "exists"}]}, "tolerations.0.operator must be one of the following"),
    ({"tolerations": [{"operator": "Exists", "tolerationSeconds": "60"}]},
     "- tolerations.0.tolerationSeconds: Invalid type. Expected: integer, given: string"),
    ({"updateStrategy": {"type": "Recreate"}}, "updateStrategy.type must be one of the following"),
    ({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}},
     "- updateStrategy.rollingUpdate.maxUnavailable: Must be greater than or equal to 1"),
    ({"updateStrategy": {"rollingUpdate": {"maxUnavailable": "0%"}}},
     "- updateStrategy.rollingUpdate.maxUnavailable: Must validate one and only one schema"),
    ({"updateStrategy": {"rollingUpdate": {"maxUnavailble": 2}}},
     "- updateStrategy.rollingUpdate: Additional property maxUnavailble is not allowed"),
    ({"updateStrategy": None}, "- (root): updateStrategy is required"),
    ({"imagePullSecrets": ["regcred"]}, "- imagePullSecrets.0: Invalid type. Expected: object, given: string"),
    ({"imagePullSecrets": [{}]}, "- imagePullSecrets.0: name is required"),
    ({"podLabels": {"team": "a b"}}, "- podLabels.team: Does not match pattern"),
    ({"podLabels": {"tier": 1}}, "- podLabels.tier: Invalid type. Expected: string, given: integer"),
    ({"podLabels": {"bad key!": "x"}}, "podLabels"),
    ({"podAnnotations": {"example.com/scrape": True}},
     "- podAnnotations.example.com/scrape: Invalid type. Expected: string, given: boolean"),
    ({"extraArgs": "--log-level debug"}, "- extraArgs: Invalid type. Expected: array, given: string"),
    ({"extraArgs": [1]}, "- extraArgs.0: Invalid type. Expected: string, given: integer"),
    ({"extraEnv": {"GODEBUG": "x"}}, "- extraEnv: Invalid type. Expected: array, given: object"),
    ({"extraEnv": [{"value": "x"}]}, "- extraEnv.0: name is required"),
    ({"extraEnv": [{"name": "X", "value": 1}]}, "- extraEnv.0.value: Invalid type. Expected: string, given: integer"),
    ({"extraVolumes": [{"emptyDir": {}}]}, "- extraVolumes.0: name is required"),
    ({"extraVolumes": [{"name": "Scratch", "emptyDir": {}}]}, "- extraVolumes.0.name: Does not match pattern"),
    ({"extraVolumeMounts": [{"name": "scratch"}]}, "- extraVolumeMounts.0: mountPath is required"),
    ({"extraVolumeMounts": [{"name": "scratch", "mountPath": "scratch"}]},
     "- extraVolumeMounts.0.mountPath: Does not match pattern"),
    ({"extraVolumeMounts": [{"name": "scratch", "mountPath": "/s", "readOnly": "yes"}]},
     "- extraVolumeMounts.0.readOnly: Invalid type. Expected: boolean, given: string"),
    ({"fullnameOverride": "Bad_Name"}, "- fullnameOverride: Does not match pattern"),
    ({"global": "x"}, "- global: Invalid type. Expected: object, given: string"),
)


def placement_checks(defaults):
    """Every placement value rendered where it belongs (and valid against
    the Kubernetes schemas, as render() checks every object), the
    defaults left alone where a value merges over them, and each value's
    refusals: wrong types by values.schema.json, clashes with the chart's
    own parts by the chart."""
    values = {
        "priorityClassName": "system-node-critical",
        "nodeSelector": {"kubernetes.io/os": None, "pool": "agents"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node.example/gpu", "operator": "DoesNotExist"}]}]}}},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "net", "effect": "NoSchedule"}],
        "updateStrategy": {"rollingUpdate": {"maxUnavailable": "25%"}},
        "imagePullSecrets": [{"name": "regcred"}],
        "podLabels": {"team": "network", "example.com/tier": "node"},
        "podAnnotations": {"example.com/owner": "net-team", "example.com/port": "9464"},
        "extraArgs": ["--some-flag", "value with spaces"],
        "extraEnv": [{"name": "GODEBUG", "value": "x=1"},
                     {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                              {"name": "btf", "mountPath": "/opt/btf", "readOnly": True}],
    }
    objects = render(values)
    ds = objects[DS]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    want = {"priorityClassName": "system-node-critical", "nodeSelector": {"pool": "agents"},
            "affinity": values["affinity"], "tolerations": values["tolerations"],
            "imagePullSecrets": [{"name": "regcred"}]}
    for key, value in want.items():
        check(pod.get(key) == value, f"pod {key} from the values", value, pod.get(key))
    check(ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}},
          "updateStrategy with maxUnavailable 25%", "merged over the default type", ds["spec"]["updateStrategy"])
    meta = ds["spec"]["template"]["metadata"]
    check(meta["labels"] == {**ds["spec"]["selector"]["matchLabels"], **values["podLabels"]}
          and "team" not in ds["metadata"]["labels"], "podLabels",
          "on the pod template with the selector labels, not on the DaemonSet", (meta["labels"], ds["metadata"]))
    check(meta["annotations"] == {"checksum/config": defaults[DS]["spec"]["template"]["metadata"]["annotations"]
                                  ["checksum/config"], **values["podAnnotations"]},
          "podAnnotations", "beside checksum/config (unchanged: the configuration is)", meta["annotations"])
    check(c["args"] == ["--config", "/etc/pwru-agent/pwru-agent.yaml", "--some-flag", "value with spaces"],
          "extraArgs", "after --config, each one argument", c["args"])
    check(c["env"][:2] == defaults[DS]["spec"]["template"]["spec"]["containers"][0]["env"]
          and c["env"][2:] == values["extraEnv"], "extraEnv", "after NODE_NAME and POD_NAMESPACE", c["env"])
    default_pod = defaults[DS]["spec"]["template"]["spec"]
    check(pod["volumes"] == default_pod["volumes"] + values["extraVolumes"], "extraVolumes",
          "after the chart's", pod["volumes"])
    check(c["volumeMounts"] == default_pod["containers"][0]["volumeMounts"] + values["extraVolumeMounts"],
          "extraVolumeMounts", "after the chart's (a chart volume mounted again elsewhere is fine)", c["volumeMounts"])
    others = {k: v for k, v in objects.items() if k not in (DS, PEER_SECRET)}
    check(others == {k: v for k, v in defaults.items() if k not in (DS, PEER_SECRET)},
          "objects other than the DaemonSet with placement values", "as with the defaults", sorted(others))

    # OnDelete keeps no rollingUpdate (the default's would be merged in);
    # maxSurge 0 is what the API defaults to and fine.
    strategy = render({"updateStrategy": {"type": "OnDelete"}})[DS]["spec"]["updateStrategy"]
    check(strategy == {"type": "OnDelete"}, "updateStrategy OnDelete", "no rollingUpdate", strategy)
    strategy = render({"updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 3}}})[DS]
    check(strategy["spec"]["updateStrategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 3},
          "maxSurge 0, maxUnavailable 3", "rendered", strategy["spec"]["updateStrategy"])
    # Emptied values render nothing rather than a null the API server refuses.
    pod = render({"nodeSelector": {"kubernetes.io/os": None}, "tolerations": [], "affinity": None,
                  "podLabels": None, "podAnnotations": None, "extraArgs": None})[DS]["spec"]["template"]["spec"]
    check(not {"nodeSelector", "tolerations", "affinity"} & set(pod), "emptied nodeSelector, tolerations, affinity",
          "left out of the pod", sorted(pod))

    # A parent chart's global values reach a subchart's values too: accepted, and change nothing.
    with_global = render({"global": {"imageRegistry": "registry.example", "labels": {"a": 1}}})
    check({k: v for k, v in with_global.items() if k != PEER_SECRET}
          == {k: v for k, v in defaults.items() if k != PEER_SECRET},
          "values with global (a subchart's)", "accepted, the same objects", sorted(with_global))

    template_refused({"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}},
                     "updateStrategy.rollingUpdate.maxSurge 1: the agent listens on host ports")
    template_refused({"updateStrategy": {"rollingUpdate": {"maxSurge": "10%"}}},
                     "updateStrategy.rollingUpdate.maxSurge 10%")
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance"):
        template_refused({"podLabels": {key: "x"}}, f"podLabels.{key} is the chart's selector label")
    template_refused({"podAnnotations": {"checksum/config": "x"}}, "podAnnotations.checksum/config is the chart's")
    for arg in ("--config", "--config=/etc/other.yaml"):
        template_refused({"extraArgs": ["--x", arg]}, "extraArgs: --config is the chart's (its ConfigMap)")
    for name in ("NODE_NAME", "POD_NAMESPACE"):
        template_refused({"extraEnv": [{"name": name, "value": "x"}]}, f"extraEnv: {name} is set by the chart")
    # Every volume and mount path the chart can render (token auth makes
    # the token volume, the default the peer TLS one) is refused as an
    # extra one: the chart's list of its own names cannot fall behind.
    token = render({"traces": {"auth": "token", "tokenSecret": "t"}})[DS]["spec"]["template"]["spec"]
    chart_volumes = {v["name"] for v in default_pod["volumes"] + token["volumes"]}
    chart_paths = {m["mountPath"] for m in default_pod["containers"][0]["volumeMounts"]
                   + token["containers"][0]["volumeMounts"]}
    check("token" in chart_volumes and "peer-tls" in chart_volumes, "the chart's volumes", "token and peer-tls among",
          chart_volumes)
    for name in sorted(chart_volumes):
        template_refused({"extraVolumes": [{"name": name, "emptyDir": {}}]},
                         f"extraVolumes: the volume name {name} is the chart's")
    for path in sorted(chart_paths) + ["/sys/fs/bpf/"]:
        template_refused({"extraVolumes": [{"name": "scratch", "emptyDir": {}}],
                          "extraVolumeMounts": [{"name": "scratch", "mountPath": path}]},
                         f"extraVolumeMounts: {path} is where the chart mounts one of its own volumes")
    for values, expect in PLACEMENT_SCHEMA_REFUSALS:
        schema_refused(values, expect)
    return len(chart_volumes) + len(chart_paths) + 1 + 9


def names_of(objects, kinds=None):
    return {k for k in objects if kinds is None or k[0] in kinds}


def two_releases_checks(first):
    """Two releases in one cluster: no cluster-scoped object shares a name,
    nor does any object when both are in one namespace, and every reference
    inside a release (binding, service account, ConfigMap, Secret, the
    agents' relay configuration, NOTES) points at its own objects."""
    port = {"port": 9474, "traces": {"peer": {"port": 9475}}}  # host network: a second release needs its own ports
    releases = {("pwru-agent", "pwru"): first,
                ("staging", "pwru-staging"): render(port, release="staging", namespace="pwru-staging"),
                ("canary", "pwru"): render(port, release="canary", namespace="pwru")}
    # The control: the same release name in two namespaces (Helm's release
    # names are per namespace) does collide; the detector must see it.
    clash = names_of(first, CLUSTER_SCOPED) & names_of(render(namespace="elsewhere"), CLUSTER_SCOPED)
    check(clash == {("ClusterRole", "pwru-agent"), ("ClusterRoleBinding", "pwru-agent"),
                    ("ClusterRole", "pwru-agent-pod-tracer"), ("ClusterRole", "pwru-agent-node-tracer")},
          "control: release pwru-agent in two namespaces", "every cluster-scoped name collides", clash)
    items = list(releases.items())
    for i, ((name_a, ns_a), a) in enumerate(items):
        for (name_b, ns_b), b in items[i + 1:]:
            shared = names_of(a, None if ns_a == ns_b else CLUSTER_SCOPED) & names_of(b)
            check(not shared, f"releases {ns_a}/{name_a} and {ns_b}/{name_b}",
                  "no " + ("object" if ns_a == ns_b else "cluster-scoped object") + " of the same name", shared)
    cluster_scoped = 0
    for (release, ns), objects in releases.items():
        full = release if "pwru-agent" in release else f"{release}-pwru-agent"
        cluster_scoped += len(names_of(objects, CLUSTER_SCOPED))
        for kind, name in objects:
            check(name == full or name.startswith(full + "-"), f"{kind} {name} of release {release}",
                  f"named {full} or {full}-...", name)
        ds = objects[("DaemonSet", full)]
        pod = ds["spec"]["template"]["spec"]
        check(ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == release
              and objects[("Service", full)]["spec"]["selector"]["app.kubernetes.io/instance"] == release,
              f"selectors of release {release}", f"instance={release}", ds["spec"]["selector"])
        binding = objects[("ClusterRoleBinding", full)]
        check(binding["roleRef"]["name"] == full and ("ClusterRole", full) in objects
              and binding["subjects"] == [{"kind": "ServiceAccount", "name": full, "namespace": ns}]
              and pod["serviceAccountName"] == full and ("ServiceAccount", full) in objects,
              f"RBAC of release {release}", f"ClusterRole {full} bound to ServiceAccount {ns}/{full}, the pods'",
              (binding, pod["serviceAccountName"]))
        volumes = {v["name"]: v for v in pod["volumes"]}
        check(volumes["config"]["configMap"]["name"] == full and ("ConfigMap", full) in objects
              and volumes["peer-tls"]["secret"]["secretName"] == f"{full}-peer-tls"
              and ("Secret", f"{full}-peer-tls") in objects, f"volumes of release {release}",
              f"its own ConfigMap {full} and Secret {full}-peer-tls", volumes)
        traces = yaml.safe_load(objects[("ConfigMap", full)]["data"]["pwru-agent.yaml"])["traces"]
        check(traces["peer_daemonset"] == full and traces["peer_selector"]
              == f"app.kubernetes.io/name=pwru-agent,app.kubernetes.io/instance={release}",
              f"relay configuration of release {release}", f"only to DaemonSet {full}'s pods", traces)
        if release != "pwru-agent":
            notes = subprocess.run([RENDER, "-notes", "-name", release, "-namespace", ns, CHART],
                                   stdout=subprocess.PIPE, check=True, timeout=60).stdout.decode()
            check(f"--clusterrole={full}-pod-tracer" in notes and f"service/{full} " in notes
                  and f"daemonset/{full}" in notes, f"NOTES.txt of release {release}", f"names {full}'s objects",
                  notes)
    # A release whose name holds the chart's keeps it; fullnameOverride wins.
    for values, release, want in ((None, "pwru-agent-prod", "pwru-agent-prod"),
                                  ({"fullnameOverride": "agent"}, "x", "agent"),
                                  ({"nameOverride": "skb"}, "x", "x-skb")):
        objects = render(values, release=release)
        check(("DaemonSet", want) in objects and ("ClusterRole", f"{want}-pod-tracer") in objects,
              f"release {release} with {values}", f"objects named {want}", sorted(objects))
    return len(releases), cluster_scoped


IMAGE_SCHEMA_REFUSALS = (
    ({"image": {"repository": "ghcr.io/acme/pwru-agent:0.1.0"}}, "- image.repository: Does not match pattern"),
    ({"image": {"repository": "ghcr.io/Acme/pwru-agent"}}, "- image.repository: Does not match pattern"),
    ({"image": {"repository": "ghcr.io/acme/pwru-agent@sha256:00"}}, "- image.repository: Does not match pattern"),
    ({"image": {"repository": ""}}, "- image.repository: Does not match pattern"),
    ({"image": {"tag": "v1 "}}, "- image.tag: Does not match pattern"),
    ({"image": {"tag": 1.10}}, "- image.tag: Invalid type. Expected: string"),  # YAML reads 1.10 as 1.1
)


def image_checks():
    """The image: values.yaml's registry path tagged with the chart's
    appVersion, which must be the agent's own version (CMakeLists.txt's
    project VERSION, what pwru_build_info{version} and the image build's
    VERSION check use), so that the default tag is the image a user built
    from these sources; a tag and a registry of one's own; a repository
    with a tag, digest or upper case refused by the schema."""
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        app_version = yaml.safe_load(f)["appVersion"]
    with open(os.path.join(CHART, "values.yaml")) as f:
        repository = yaml.safe_load(f)["image"]["repository"]
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        project = re.search(r"^project\(pwru_agent VERSION (\S+)", f.read(), re.M)
    check(project and app_version == project.group(1), "Chart.yaml appVersion", "CMakeLists.txt's project VERSION",
          f"{app_version} vs {project and project.group(1)}")
    registry = repository.split("/")[0]
    check("/" in repository and ("." in registry or ":" in registry), "image.repository default",
          "a registry path (REGISTRY/NAME), not a bare name that resolves to Docker Hub", repository)

    def image(values):
        return render(values)[DS]["spec"]["template"]["spec"]["containers"][0]["image"]

    for values, want in ((None, f"{repository}:{app_version}"),
                         ({"image": {"tag": ""}}, f"{repository}:{app_version}"),
                         ({"image": {"repository": "ghcr.io/acme/pwru-agent", "tag": "0.1.0-rc.1"}},
                          "ghcr.io/acme/pwru-agent:0.1.0-rc.1"),
                         ({"image": {"repository": "localhost:5000/pwru-agent"}},
                          f"localhost:5000/pwru-agent:{app_version}")):
        seen = image(values)
        check(seen == want, f"image with {values}", want, seen)
    for values, expect in IMAGE_SCHEMA_REFUSALS:
        schema_refused(values, expect)
    return len(IMAGE_SCHEMA_REFUSALS)


PROMETHEUS_RULE = ("PrometheusRule", "pwru-agent")
ALERTS = {"PwruAgentDown", "PwruAgentsMissing", "PwruEventsLost", "PwruUncountedPackets", "PwruSeriesFolded",
          "PwruKubernetesNotSynced", "PwruDropRateSpike"}
# What Grafana substitutes before a query reaches Prometheus ("All" for the variables).
GRAFANA_SUBSTITUTIONS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m", "$node": ".*",
                         "$namespace": ".*", "$pod": ".*"}


def promtool(args, files, what):
    """Runs promtool on files written into WORK/promtool/ (name: YAML object): (exit status, output)."""
    d = os.path.join(WORK, "promtool")
    os.makedirs(d, exist_ok=True)
    for name, doc in files.items():
        with open(os.path.join(d, name), "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
    p = subprocess.run(["promtool"] + args, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode()


def promtool_rules_ok(groups, what):
    code, out = promtool(["check", "rules", "rules.yaml"], {"rules.yaml": {"groups": groups}}, what)
    check(code == 0 and "SUCCESS" in out, f"promtool check rules: {what}", "SUCCESS", out)


def dashboard_expressions():
    """(where, PromQL as Grafana sends it) of every panel target and query variable of the dashboard."""
    with open(os.path.join(CHART, "dashboards", "pwru-agent.json")) as f:
        board = json.load(f)
    found = []
    for panel in board["panels"]:
        for t in panel.get("targets", []):
            found.append((f'panel {panel["id"]} "{panel["title"]}" {t["refId"]}', t["expr"]))
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*), *(\w+)\)", var["query"]["query"])
            check(m, f"dashboard variable {var['name']}", "label_values(SELECTOR, LABEL)", var["query"]["query"])
            found.append((f"variable {var['name']}", f"count by ({m.group(2)}) ({m.group(1)})"))
    out = []
    for where, expr in found:
        for k, v in GRAFANA_SUBSTITUTIONS.items():
            expr = expr.replace(k, v)
        check("$" not in expr, f"dashboard {where}", "only Grafana's variables", expr)
        out.append((where, expr))
    return board, out


def dashboard_checks():
    """Every dashboard expression parsed by promtool (as recording rules);
    bar gauges get one series per bar, not a table frame reduced to one;
    rates and plain values never share a panel axis; host drops are
    labelled host, evaluated by promtool on synthetic series."""
    board, exprs = dashboard_expressions()
    groups = [{"name": "dashboard", "rules": [{"record": f"dashboard:expr_{i}", "expr": e}
                                              for i, (_, e) in enumerate(exprs)]}]
    promtool_rules_ok(groups, f"{len(exprs)} dashboard expressions")
    # Control: promtool refuses a broken expression, so the check above can fail.
    code, out = promtool(["check", "rules", "rules.yaml"],
                         {"rules.yaml": {"groups": [{"name": "x", "rules": [
                             {"record": "x:y", "expr": exprs[0][1].replace(")", "", 1)}]}]}}, "control")
    check(code != 0 and "parse error" in out, "promtool control on a broken expression", "refused", out)

    for panel in board["panels"]:
        targets = panel.get("targets", [])
        where = f'panel {panel["id"]} "{panel["title"]}"'
        if panel["type"] in ("bargauge", "stat", "gauge"):
            reduce = panel["options"].get("reduceOptions", {})
            for t in targets:
                check(t.get("format", "time_series") == "time_series" and reduce.get("values") is False
                      and reduce.get("calcs") == ["lastNotNull"], f"{where} {t['refId']}",
                      "one series per bar, each reduced to its last value (a table frame reduces to one bar)",
                      (t.get("format"), reduce))
        right = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel.get("fieldConfig", {}).get("overrides", [])
                 if o["matcher"]["id"] == "byFrameRefID"}
        axes = {}
        for t in targets:
            props = right.get(t["refId"], {})
            axis = props.get("custom.axisPlacement", "left")
            unit = props.get("unit", panel["fieldConfig"]["defaults"].get("unit"))
            per_second = bool(re.search(r"\b(rate|irate)\(", t["expr"]))
            axes.setdefault(axis, set()).add((unit, per_second))
        for axis, kinds in axes.items():
            check(len(kinds) == 1, f"{where}, {axis} axis", "one unit: all rates or all plain values", kinds)

    # Host drops as "host", a pod as namespace/pod, a netns no pod owns by its inode.
    by_pod = next(e for w, e in exprs if '"Drops per second by pod"' in w)
    series = {'pwru_skb_drops_total{job="pwru-agent",node="n1",function="f",reason="NO_SOCKET",namespace="",pod="",'
              'netns=""}': "0+60x20",
              'pwru_skb_drops_total{job="pwru-agent",node="n1",function="f",reason="NO_SOCKET",namespace="shop",'
              'pod="web-0",netns=""}': "0+120x20",
              'pwru_skb_drops_total{job="pwru-agent",node="n1",function="f",reason="NO_SOCKET",namespace="",pod="",'
              'netns="4026532245"}': "0+180x20"}
    want = [{"labels": '{who="host"}', "value": 1}, {"labels": '{who="shop/web-0"}', "value": 2},
            {"labels": '{who="netns 4026532245"}', "value": 3}]
    test = {"rule_files": ["empty.yaml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
                       "promql_expr_test": [{"expr": by_pod, "eval_time": "15m", "exp_samples": want}]}]}
    code, out = promtool(["test", "rules", "board-test.yaml"],
                         {"empty.yaml": {"groups": []}, "board-test.yaml": test}, "drops by pod")
    check(code == 0 and "SUCCESS" in out, "drops by pod evaluated by promtool", "host, shop/web-0, netns 4026532245",
          out)
    return len(exprs)


def prometheus_rule_checks():
    """The PrometheusRule: rendered only when asked or served (as the
    ServiceMonitor), valid against the CRD schema, every expression parsed
    by promtool, and every alert evaluated by promtool's rule tests on
    synthetic series: each fires on its condition (others of another job
    stay out) and none fires on a healthy fleet."""
    check(PROMETHEUS_RULE not in render(), "PrometheusRule (auto) without the monitoring.coreos.com/v1 API",
          "absent", "present")
    check(PROMETHEUS_RULE not in render({"prometheusRule": {"enabled": False}}, ["monitoring.coreos.com/v1"]),
          "PrometheusRule switched off", "absent", "present")
    check(PROMETHEUS_RULE in render({"prometheusRule": {"enabled": True}}), "PrometheusRule forced on",
          "present", "absent")
    rule = render(None, ["monitoring.coreos.com/v1"]).get(PROMETHEUS_RULE)
    check(rule is not None, "PrometheusRule (auto) with the API served", "present", "absent")

    # Controls: the CRD schema refuses what the Operator's admission would.
    for mutate, expect in ((lambda r: r["spec"]["groups"][0]["rules"][0].update({"for": "5 minutes"}), "does not match"),
                           (lambda r: r["spec"]["groups"][0]["rules"][0].pop("expr"), "'expr' is a required"),
                           (lambda r: r["spec"]["groups"][0]["rules"][0].update(severity="warning"),
                            "'severity' was unexpected")):
        broken = copy.deepcopy(rule)
        mutate(broken)
        problems = SCHEMAS.problems(broken)
        check(any(expect in p for p in problems), f"validator control on PrometheusRule: {expect}", "refused",
              problems or "accepted")

    groups = rule["spec"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    check({r["alert"] for r in rules} == ALERTS, "alerts", sorted(ALERTS), [r.get("alert") for r in rules])
    for r in rules:
        check(r.get("for") and r["labels"].get("severity") in ("info", "warning", "critical")
              and r["annotations"].get("summary") and len(r["annotations"].get("description", "")) > 80,
              f"alert {r['alert']}", "for:, a severity, a summary and a description saying what to do", r)
        names = set(re.findall(r"\b(pwru_\w+|up)\{([^}]*)\}", r["expr"]))
        check(names and all('job="pwru-agent"' in sel for _, sel in names), f"alert {r['alert']} selectors",
              "every agent series selected by the release's job", r["expr"])
    promtool_rules_ok(groups, "the PrometheusRule's groups")

    sel = 'job="pwru-agent"'
    a, b = f'{sel},instance="10.0.0.1:9464",node="n1"', f'{sel},instance="10.0.0.2:9464",node="n2"'
    drop = f'pwru_skb_drops_total{{{a},function="nft_do_chain",reason="NETFILTER_DROP",namespace="",pod="",netns=""}}'

    def fleet(broken):
        """Series over 100 minutes at 1m: two agents, everything healthy, or every condition induced."""
        s = {f"up{{{a}}}": "1x100", f"up{{{b}}}": "0x100" if broken else "1x100",
             'kube_daemonset_status_desired_number_scheduled{namespace="pwru",daemonset="pwru-agent",'
             'job="kube-state-metrics"}': "2x100",
             f"pwru_events_lost_total{{{a}}}": "0+5x100" if broken else "0x100",
             f'pwru_skb_uncounted_packets_total{{{a},map="drops"}}': "0+10x100" if broken else "0x100",
             f'pwru_skb_uncounted_packets_total{{{a},map="visits"}}': "0x100",
             f'pwru_metrics_folded_keys{{{a},metric="pwru_skb_function_visits_total"}}': "3x100" if broken else "0x100",
             f"pwru_kubernetes_synced{{{a}}}": "0x100" if broken else "1x100",
             # 1 drop/s for 80 minutes, then 100/s: a spike (healthy: 1/s throughout).
             drop: "0+60x80 4800+6000x20" if broken else "0+60x100",
             # Another release's agents: every condition, none of this release's alerts.
             'pwru_metrics_folded_keys{job="other",instance="10.0.0.3:9464",node="n3",metric="m"}': "9x100",
             'pwru_kubernetes_synced{job="other",instance="10.0.0.3:9464",node="n3"}': "0x100",
             'up{job="other",instance="10.0.0.3:9464",node="n3"}': "0x100"}
        return [{"series": k, "values": v} for k, v in s.items()]

    def firing(alert, severity, labels=""):
        return {"labels": f'ALERTS{{alertname="{alert}",alertstate="firing",severity="{severity}"{labels}}}',
                "value": 1}

    expect = [firing("PwruAgentDown", "warning", f",{b}"), firing("PwruAgentsMissing", "warning"),
              firing("PwruEventsLost", "warning", f",{a}"),
              firing("PwruUncountedPackets", "warning", f',{a},map="drops"'),
              firing("PwruSeriesFolded", "info", f',{a},metric="pwru_skb_function_visits_total"'),
              firing("PwruKubernetesNotSynced", "warning", f",{a}"),
              firing("PwruDropRateSpike", "warning", f',{sel},node="n1",reason="NETFILTER_DROP"')]
    check({e["labels"].split('"')[1] for e in expect} == ALERTS, "alert tests", "one per alert", expect)
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [
        {"name": "every condition", "interval": "1m", "input_series": fleet(True),
         "promql_expr_test": [{"expr": 'ALERTS{alertstate="firing"}', "eval_time": "99m", "exp_samples": expect}]},
        {"name": "healthy", "interval": "1m", "input_series": fleet(False),
         "promql_expr_test": [{"expr": "ALERTS", "eval_time": "99m", "exp_samples": []}]}]}
    code, out = promtool(["test", "rules", "alerts-test.yaml"],
                         {"rules.yaml": {"groups": groups}, "alerts-test.yaml": test}, "alerts")
    check(code == 0 and "SUCCESS" in out, "alerts evaluated by promtool test rules",
          "each fires on its condition, none on a healthy fleet", out)
    # The e2e (agent.alerts, ctest fixture chart_rules) evaluates these very
    # groups against a live agent: written only once they passed the checks.
    with open(RULES_FILE + ".tmp", "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    os.replace(RULES_FILE + ".tmp", RULES_FILE)

    # Values: the Operator's ruleSelector labels, another job, no kube-state-metrics.
    rule = render({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}, "job": "pwru",
                                      "kubeStateMetrics": False, "dropSpike": {"factor": 4, "minRate": 0.5}}})[
        PROMETHEUS_RULE]
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    spike = next(r for r in rules if r["alert"] == "PwruDropRateSpike")["expr"]
    check(rule["metadata"]["labels"].get("release") == "kps" and "PwruAgentsMissing" not in {r["alert"] for r in rules}
          and all('job="pwru-agent"' not in r["expr"] and 'job="pwru"' in r["expr"] for r in rules)
          and "> 0.5" in spike and "> 4 *" in spike, "PrometheusRule with labels, job, kubeStateMetrics false, dropSpike",
          "the release label, job pwru everywhere, no PwruAgentsMissing, factor 4 and 0.5/s", rule)
    promtool_rules_ok(rule["spec"]["groups"], "the PrometheusRule with other values")
    for values, expect in (({"prometheusRule": {"enabled": "yes"}}, "prometheusRule.enabled"),
                           ({"prometheusRule": {"dropSpike": {"factor": 1}}}, "prometheusRule.dropSpike.factor"),
                           ({"prometheusRule": {"job": 'a"b'}}, "prometheusRule.job"),
                           ({"prometheusRule": {"lables": {}}}, "Additional property lables is not allowed")):
        schema_refused(values, expect)
    return len(ALERTS)


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
    # The image e2e runs the image under exactly this (podman: --cap-drop ALL --cap-add ..., --read-only,
    # no-new-privileges, podman's default seccomp filter).
    check(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
          and sc.get("seccompProfile") == {"type": "RuntimeDefault"}, "securityContext hardening",
          "allowPrivilegeEscalation false, readOnlyRootFilesystem true, seccompProfile RuntimeDefault", sc)
    validator_controls({**objects, **render(None, ["monitoring.coreos.com/v1"])})
    config = agent_accepts(objects, "defaults")
    check(config["traces"]["auth"] == "kubernetes" and config["http"]["listen"] == "0.0.0.0:9464"
          and config["kubernetes"]["proc_root"] == "/host/proc", "rendered agent configuration",
          "auth kubernetes, listen on all addresses, /host/proc", config)
    peer_checks(objects, config)
    peer_secret_checks(objects)
    peer_switch_checks()
    template_placement_refusals = placement_checks(objects)
    image_refusals = image_checks()
    release_count, cluster_scoped = two_releases_checks(objects)
    alert_count = prometheus_rule_checks()
    dashboard_exprs = dashboard_checks()
    rules = objects[("ClusterRole", "pwru-agent")]["rules"]
    check({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]} in rules,
          "ClusterRole", "get/list/watch pods", rules)
    service_rules = [{"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
                     {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}]
    check(all(r in rules for r in service_rules), "ClusterRole", "get services, list endpointslices (a Service's pods)",
          rules)
    check(any("tokenreviews" in r["resources"] for r in rules)
          and any("subjectaccessreviews" in r["resources"] for r in rules),
          "ClusterRole with auth kubernetes", "create tokenreviews and subjectaccessreviews", rules)
    for role, resource, verbs in (("pod-tracer", "pods/trace", ["create"]),
                                  ("node-tracer", "nodes/trace", ["create", "list", "delete"])):
        rules = objects[("ClusterRole", f"pwru-agent-{role}")]["rules"]
        check(rules == [{"apiGroups": [""], "resources": [resource], "verbs": verbs}], f"ClusterRole {role}",
              f"{verbs} on {resource}, what the agent's SubjectAccessReview asks", rules)
    default_notes = render(notes=True)
    notes_checks(default_notes, "kubernetes")
    # The placeholder image never pulls: the install says so at once, not a pod's ErrImagePull later.
    check("WARNING: image.repository is still the chart's placeholder" in default_notes,
          "NOTES.txt with the default image.repository", "a warning to build, push and set it", default_notes[:400])
    pushed = render({"image": {"repository": "ghcr.io/acme/pwru-agent"}}, notes=True)
    check("WARNING" not in pushed, "NOTES.txt with image.repository set", "no warning", pushed[:400])
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
        # e2e agent.operator_labels scrapes as the Operator would with and without it.
        check(sm["spec"]["endpoints"][0].get("honorLabels") is True, "ServiceMonitor honorLabels",
              "true: the scraped namespace/pod name the packet's pod, not the agent's", sm["spec"]["endpoints"][0])
    # kube-prometheus-stack's Prometheus selects ServiceMonitors labelled release: <its release>.
    sm = render({"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}).get(
        ("ServiceMonitor", "pwru-agent"))
    check(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack"
          and sm["metadata"]["labels"].get("app.kubernetes.io/name") == "pwru-agent",
          "serviceMonitor.labels", "added to the chart's own labels", sm["metadata"]["labels"])
    check(("ServiceMonitor", "pwru-agent") not in render({"serviceMonitor": {"enabled": False}},
                                                          ["monitoring.coreos.com/v1"]),
          "ServiceMonitor switched off", "absent", "present")

    # Every switch the other way.
    turned = {"privileged": True,
              "traces": {"auth": "token", "tokenSecret": "pwru-trace-token", "peer": {"enabled": False}},
              "dashboard": {"enabled": False}, "port": 9500, "image": {"tag": "test"},
              "config": {"counters": {"drops_max_entries": 65536}, "log": {"format": "json"}}}
    objects = render(turned)
    c = daemonset_checks({**objects, ("DaemonSet", "pwru-agent"): _with_port(objects, 9500)})
    check(c["securityContext"] == {"privileged": True}, "securityContext with privileged", "privileged only",
          c["securityContext"])
    check(c["image"].endswith("/pwru-agent:test"), "image", "REPOSITORY/pwru-agent:test", c["image"])
    config = agent_accepts(objects, "every switch")
    check(config["traces"] == {"auth": "token", "token_file": "/var/run/pwru-agent/token/token", "forward": False}
          and config["counters"]["drops_max_entries"] == 65536 and config["http"]["listen"] == "0.0.0.0:9500",
          "rendered configuration with token auth, a bigger map, port 9500", "all three", config)
    pod = objects[("DaemonSet", "pwru-agent")]["spec"]["template"]["spec"]
    check({"name": "token", "secret": {"secretName": "pwru-trace-token"}} in pod["volumes"], "token Secret volume",
          "mounted", pod["volumes"])
    rules = objects[("ClusterRole", "pwru-agent")]["rules"]
    check(not any("tokenreviews" in r["resources"] for r in rules), "ClusterRole with token auth",
          "no review rights", rules)
    check(all(r in rules for r in service_rules), "ClusterRole with token auth",
          "get services, list endpointslices still (Service traces need no auth mode)", rules)
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
    return (f"defaults, ServiceMonitor auto/on/off, every switch, three template refusals, 9 schema refusals; "
            f"image REGISTRY/pwru-agent:appVersion (= the agent's version), {image_refusals} image refusals; "
            f"placement values rendered and merged, {template_placement_refusals} placement refusals by the chart and "
            f"{len(PLACEMENT_SCHEMA_REFUSALS)} by values.schema.json, global accepted; {release_count} releases "
            f"({cluster_scoped} cluster-scoped objects) with no shared name, the control collision seen; "
            f"the peer TLS Secret: mutual TLS with its files, kept by an upgrade (lookup), remade when broken, "
            f"another install's CA refused; tlsSecret and relay off; "
            f"{len(VALIDATED)} rendered objects valid against the Kubernetes {len(SCHEMAS.kinds())}-kind schemas, "
            f"11 broken controls refused; PrometheusRule auto/on/off, {alert_count} alerts each fired by promtool "
            f"on its condition and quiet on a healthy fleet, 3 CRD controls, 4 schema refusals; {dashboard_exprs} "
            f"dashboard expressions parsed by promtool, bar gauges, axis units, host label evaluated; NOTES for both auth modes; agent accepts both configurations")


def _with_port(objects, port):
    """The DaemonSet with its port as daemonset_checks expects it (9464), after checking it is `port`."""
    ds = json.loads(json.dumps(objects[("DaemonSet", "pwru-agent")]))
    c = ds["spec"]["template"]["spec"]["containers"][0]
    check(c["ports"][0]["containerPort"] == port, "container port", port, c["ports"])
    c["ports"][0]["containerPort"] = 9464
    return ds


if __name__ == "__main__":
    os.makedirs(WORK, exist_ok=True)
    if os.path.exists(RULES_FILE):  # a failed run must not leave the last good rules for the e2e
        os.remove(RULES_FILE)
    try:
        summary = main()
        print(f"PASS [chart]: {summary}")
    except Failure as f:
        print(f"FAIL [chart]: {f}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print(f"FAIL [chart]: {e}", file=sys.stderr)
        sys.exit(1)
