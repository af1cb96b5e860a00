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


def render(values=None, api_versions=None, ok=True, notes=False, cluster=None):
    """The rendered objects as {(kind, name): object}, each checked against
    the Kubernetes API schemas; with ok=False, the error text; with notes,
    the rendered NOTES.txt. `cluster`: objects already in the cluster, for
    the chart's lookup (an upgrade); None: a first install."""
    args = [RENDER] + (["-notes"] if notes else [])
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
    peer_checks(objects, config)
    peer_secret_checks(objects)
    peer_switch_checks()
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
    turned = {"privileged": True,
              "traces": {"auth": "token", "tokenSecret": "pwru-trace-token", "peer": {"enabled": False}},
              "dashboard": {"enabled": False}, "port": 9500, "image": {"tag": "test"},
              "config": {"counters": {"drops_max_entries": 65536}, "log": {"format": "json"}}}
    objects = render(turned)
    c = daemonset_checks({**objects, ("DaemonSet", "pwru-agent"): _with_port(objects, 9500)})
    check(c["securityContext"] == {"privileged": True}, "securityContext with privileged", "privileged only",
          c["securityContext"])
    check(c["image"] == "pwru-agent:test", "image", "pwru-agent:test", c["image"])
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
            f"the peer TLS Secret: mutual TLS with its files, kept by an upgrade (lookup), remade when broken, "
            f"another install's CA refused; tlsSecret and relay off; "
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
