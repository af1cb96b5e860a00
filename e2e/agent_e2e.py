#!/usr/bin/env python3
"""End-to-end tests of the installed pwru-agent.

Usage (as root):  agent_e2e.py /path/to/bin/pwru-agent SCENARIO

The agent runs as it would on a node, with a configuration file written by
the test (loopback port, JSON logs). A real Prometheus server (Debian's
`prometheus` package) scrapes it on loopback and the assertions go through
Prometheus' HTTP API, as a dashboard's would. Traffic stays inside network
namespaces the test creates. Missing root or tools is a failure, not a skip.
Exit status: 0 pass, 1 fail.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pwru_e2e as base
from pwru_e2e import Failure, Topology, check, sh, wait_until

SCENARIOS = ("prometheus", "endpoints", "bad_config", "pods", "api_down", "dashboard", "operator_labels", "alerts",
             "churn")
TOOLS = ("ip", "nc", "nft", "prometheus", "promtool", "openssl")
FAKE_APISERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "k8s",
                              "fake_kube_apiserver.py")
LABELS_AFTER_API_TIMEOUT = 30.0  # the bound: labels within 30 s of the API server's return

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0     # Kubernetes' default grace period
QUERY_TIMEOUT = 40.0    # traffic -> next scrape -> visible in a query
DATAGRAMS = 5


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body); connection errors are status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
        return 0, str(e)


class Agent:
    """One pwru-agent process with its own configuration file."""

    def __init__(self, binary, workdir, extra_yaml="", port=None):
        self.port = port or free_port()
        self.config = os.path.join(workdir, "pwru-agent.yaml")
        with open(self.config, "w") as f:
            f.write(f"http:\n  listen: 127.0.0.1:{self.port}\nlog:\n  format: json\n  level: info\n{extra_yaml}")
        self.err_path = os.path.join(workdir, "agent.stderr")
        self.argv = [binary, "--config", self.config]
        self.proc = None

    def start(self):
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        return self

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self):
        end = time.monotonic() + base.remaining(READY_TIMEOUT)
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise Failure("pwru-agent start-up", "running and ready",
                              f"exited with {self.proc.returncode}:\n{self.stderr()}")
            if http_get(self.url("/readyz"))[0] == 200:
                return self
            time.sleep(0.1)
        raise Failure("pwru-agent start-up", f"/readyz 200 within {READY_TIMEOUT}s", self.stderr())

    def stop(self):
        """SIGTERM; the agent must exit 0 inside the grace period. Returns seconds taken."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=base.remaining(STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure("pwru-agent exit after SIGTERM", f"within {STOP_TIMEOUT}s", "still running (killed)")
        check(rc == 0, "pwru-agent exit status after SIGTERM", 0, f"{rc}\n{self.stderr()}")
        return time.monotonic() - start

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class Prometheus:
    """Debian's Prometheus, scraping the agent every second, on loopback."""

    def __init__(self, workdir, target_port, target_labels=None):
        self.port = free_port()
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: pwru-agent\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
            if target_labels:
                f.write("        labels:\n" + "".join(f"          {k}: '{v}'\n" for k, v in target_labels.items()))
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.proc = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.dir}/data",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_until(lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200, 30,
                   "Prometheus /-/ready")
        return self

    def query(self, promql):
        """The instant vector of `promql` as [(labels, value)]."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = http_get(url)
        check(status == 200, f"Prometheus query {promql}", "HTTP 200", f"{status}: {body}")
        data = json.loads(body)
        check(data.get("status") == "success", f"Prometheus query {promql}", "status success", body)
        return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

    def wait_for(self, promql, pred, what):
        last = []

        def ok():
            nonlocal last
            last = self.query(promql)
            return pred(last)

        try:
            wait_until(ok, QUERY_TIMEOUT, what)
        except Failure:
            raise Failure(what, f"{promql} satisfying the check within {QUERY_TIMEOUT}s",
                          f"last answer: {last}\n--- prometheus log:\n{self.log()}")
        return last

    def target_health(self):
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/targets")
        return body if status == 200 else f"{status}: {body}"

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def scrape_series(text, name):
    """{frozenset(labels.items()): value} of one metric in a /metrics text."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head))
        out[frozenset(labels.items())] = float(value)
    return out


def cgroup2_mount():
    """Where cgroup v2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")
            if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
                return fields[0].split()[4]
    raise Failure("cgroup v2 hierarchy", "mounted (needed to place a process as the kubelet would)",
                  "none in /proc/self/mountinfo; mount -t cgroup2 none /sys/fs/cgroup/unified")


class FakeApiServer:
    """tests/k8s/fake_kube_apiserver.py with a CA and certificate made here."""

    def __init__(self, workdir, port=None):
        self.dir = os.path.join(workdir, "apiserver")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.ca = os.path.join(self.dir, "ca.crt")
        self.token = os.path.join(self.dir, "token")
        d = self.dir
        sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pwru-e2e-ca",
            "-keyout", f"{d}/ca.key", "-out", self.ca])
        sh(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
            f"{d}/server.key", "-out", f"{d}/server.csr"])
        with open(f"{d}/san.ext", "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        sh(["openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", self.ca, "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{d}/san.ext", "-out", f"{d}/server.crt"])
        with open(self.token, "w") as f:
            f.write("e2e-token\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", FAKE_APISERVER, f"{self.dir}/server.crt", f"{self.dir}/server.key", self.token,
             str(self.port)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline().decode()
        check(line.strip() == f"PORT {self.port}", "fake API server start", f"PORT {self.port}", line)
        return self

    def control(self, what, body):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/__control/{what}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            check(r.status == 200, f"fake API server {what}", 200, r.status)

    def agent_yaml(self, grace=3, node="n1"):
        return (f"kubernetes:\n  api_server: https://127.0.0.1:{self.port}\n  token_file: {self.token}\n"
                f"  ca_file: {self.ca}\n  node_name: {node}\n  rescan_interval_seconds: 2\n"
                f"  deleted_pod_grace_seconds: {grace}\n")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class PodProcess:
    """A process placed as a container runtime places a pod's container: in the
    pod's netns and in a cgroup named as the kubelet's systemd driver names it."""

    def __init__(self, workdir, ns, command=None, uid=None):
        """Runs `sleep 300` in named netns `ns`, or (ns None) the shell `command`."""
        self.uid = uid or "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
        root = os.path.join(cgroup2_mount(), f"pwru-e2e-{os.getpid()}")
        self.cgroup = os.path.join(
            root, "kubepods.slice", "kubepods-besteffort.slice",
            f"kubepods-besteffort-pod{self.uid.replace('-', '_')}.slice",
            f"cri-containerd-{secrets.token_hex(32)}.scope")
        self.made = []
        path = "/"
        for part in self.cgroup.strip("/").split("/"):
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                os.mkdir(path)
                self.made.append(path)
        # Joins the cgroup first, then the netns: the scan never sees it half placed.
        inner = command if ns is None else f"ip netns exec {ns} sleep 300"
        self.proc = subprocess.Popen(
            ["sh", "-c", f'echo $$ > "{self.cgroup}/cgroup.procs" && exec {inner}'],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for path in reversed(self.made):
            for _ in range(100):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.02)


def pod_drop_series(agent, ns, pod):
    """Value of the NO_SOCKET drop series of pod ns/pod in a fresh scrape (None: absent)."""
    status, text = http_get(agent.url("/metrics"))
    check(status == 200, "GET /metrics", 200, status)
    for labels, value in scrape_series(text, "pwru_skb_drops_total").items():
        labels = dict(labels)
        if labels.get("namespace") == ns and labels.get("pod") == pod and labels.get("reason") == "NO_SOCKET":
            check(labels.get("netns") == "", "netns label of a pod's series", "empty", labels)
            return value
    return None


def visit_series(agent, function):
    """{labels dict as sorted tuple: value} of the visit series of `function` in a fresh scrape."""
    status, text = http_get(agent.url("/metrics"))
    check(status == 200, "GET /metrics", 200, status)
    return {tuple(sorted(dict(labels).items())): value
            for labels, value in scrape_series(text, "pwru_skb_function_visits_total").items()
            if dict(labels).get("function") == function}


def metric_value(agent, name):
    status, text = http_get(agent.url("/metrics"))
    values = scrape_series(text, name)
    return next(iter(values.values())) if values else None


def send_udp(topo, from_ns, dst, port, count):
    """`count` datagrams, each from a socket of its own (nc -w0 on a loaded machine sometimes sent none)."""
    sh(topo.exec_args(from_ns, "/usr/bin/python3", "-c",
                      "import socket, sys\n"
                      "for _ in range(int(sys.argv[3])):\n"
                      "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
                      "        s.sendto(b'pwru-agent e2e\\n', (sys.argv[1], int(sys.argv[2])))\n",
                      dst, str(port), str(count)))


def scenario_prometheus(ctx):
    """Drops inside test namespaces show up in Prometheus with netns, reason and function."""
    topo = ctx.topology()
    # ns A drops UDP to port 7777 with a netfilter rule: NETFILTER_DROP there.
    sh(topo.exec_args(topo.ns_a, "nft", "-f", "-"), input_bytes=(
        "table inet pwru_agent_e2e {\n chain in {\n  type filter hook input priority 0; policy accept;\n"
        "  udp dport 7777 counter drop\n }\n}\n").encode())
    agent = ctx.track(Agent(ctx.binary, ctx.workdir).start()).wait_ready()
    prom = ctx.track(Prometheus(ctx.workdir, agent.port).start())
    prom.wait_for('up{job="pwru-agent"}', lambda r: r and r[0][1] == 1.0, "Prometheus scraping the agent")

    send_udp(topo, topo.ns_a, topo.ip_b, 9999, DATAGRAMS)   # closed port in B: NO_SOCKET in B
    send_udp(topo, topo.ns_b, topo.ip_a, 7777, DATAGRAMS)   # filtered in A: NETFILTER_DROP in A

    no_socket = f'pwru_skb_drops_total{{reason="NO_SOCKET",netns="{topo.inode_b}"}}'
    rows = prom.wait_for(no_socket, lambda r: sum(v for _, v in r) >= DATAGRAMS,
                         f"{DATAGRAMS} NO_SOCKET drops in netns {topo.inode_b}")
    check(sum(v for _, v in rows) == DATAGRAMS, "NO_SOCKET drops in the test netns", DATAGRAMS, rows)
    for labels, _ in rows:
        check(labels.get("function") == "__udp4_lib_rcv", "function label of the NO_SOCKET drop",
              "__udp4_lib_rcv (UDP's receive, which finds no socket)", labels)
        # Prometheus drops empty labels from query results: absent means "".
        check(not labels.get("namespace") and not labels.get("pod"), "pod labels of a non-pod netns",
              "empty", labels)

    nf = f'pwru_skb_drops_total{{reason="NETFILTER_DROP",netns="{topo.inode_a}"}}'
    rows = prom.wait_for(nf, lambda r: sum(v for _, v in r) >= DATAGRAMS,
                         f"{DATAGRAMS} NETFILTER_DROP drops in netns {topo.inode_a}")
    check(sum(v for _, v in rows) == DATAGRAMS, "NETFILTER_DROP drops in the filtering netns", DATAGRAMS, rows)
    # Which netfilter function frees the skb depends on the kernel: nf_hook_slow
    # on older ones, nft_do_chain where nftables sets the reason itself (6.18).
    check(all(labels.get("function", "").startswith(("nf_", "nft_")) for labels, _ in rows),
          "function label of the netfilter drop", "a netfilter function (nf_hook_slow, nft_do_chain)", rows)
    # Nothing of the one netns leaks into the other.
    check(not prom.query(f'pwru_skb_drops_total{{reason="NETFILTER_DROP",netns="{topo.inode_b}"}}'),
          "NETFILTER_DROP in the netns without the rule", "no series", "some")

    # Visits of the receive path in B, and bytes with the drops.
    visits = prom.wait_for(f'pwru_skb_function_visits_total{{function="netif_receive_skb",netns="{topo.inode_b}"}}',
                           lambda r: r and r[0][1] >= DATAGRAMS, "visits of netif_receive_skb in B")
    check(visits[0][1] >= DATAGRAMS, "netif_receive_skb visits in B", f">= {DATAGRAMS}", visits)
    drop_bytes = prom.query(f'sum(pwru_skb_drop_bytes_total{{reason="NO_SOCKET",netns="{topo.inode_b}"}})')
    check(drop_bytes and drop_bytes[0][1] == DATAGRAMS * (len(b"pwru-agent e2e\n") + 8),
          "bytes of the NO_SOCKET drops (UDP header + payload)", DATAGRAMS * (15 + 8), drop_bytes)
    hooks = prom.query('pwru_attached_hooks')
    check(hooks and hooks[0][1] >= 20 and hooks[0][0].get("backend") == "tracepoint", "pwru_attached_hooks",
          "tracepoint backend, >= 20 hooks", hooks)
    info = prom.query('pwru_build_info')
    labels = info[0][0] if info else {}
    check(len(info) == 1 and labels.get("kernel") == os.uname().release
          and labels.get("backend") == hooks[0][0].get("backend")
          and re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\S*", labels.get("version", ""))
          and re.fullmatch(r"[0-9a-f]{7,}", labels.get("revision", "")),
          "pwru_build_info", f"one series: a version, the git revision of this checkout, kernel {os.uname().release}, "
          "the backend of pwru_attached_hooks", info)

    # Counters only grow: more drops, higher value, never a reset.
    before = sum(v for _, v in prom.query(no_socket))
    send_udp(topo, topo.ns_a, topo.ip_b, 9999, 2)
    prom.wait_for(no_socket, lambda r: sum(v for _, v in r) == before + 2, "two more NO_SOCKET drops")
    resets = prom.query(f'resets(pwru_skb_drops_total{{netns="{topo.inode_b}"}}[5m])')
    check(all(v == 0 for _, v in resets), "counter resets of the drop series", 0, resets)

    took = agent.stop()
    return f"agent stopped {took:.2f}s after SIGTERM"


def scenario_endpoints(ctx):
    """The HTTP surface Kubernetes and Prometheus rely on, JSON logs, promtool, SIGTERM."""
    topo = ctx.topology()
    agent = ctx.track(Agent(ctx.binary, ctx.workdir)).start()
    # /healthz answers before attach is done; /readyz then turns 200.
    wait_until(lambda: http_get(agent.url("/healthz"))[0] == 200, READY_TIMEOUT, "/healthz 200")
    agent.wait_ready()
    send_udp(topo, topo.ns_a, topo.ip_b, 9999, 2)
    status, text = http_get(agent.url("/metrics"))
    check(status == 200, "GET /metrics", 200, status)
    check(f'netns="{topo.inode_b}"' in text and 'reason="NO_SOCKET"' in text, "/metrics content",
          "a NO_SOCKET drop series of the test netns", text[:3000])
    # An skb with neither device nor socket has no netns: "none", never an inode-like 0.
    check('netns="0"' not in text, "netns label of skbs without a namespace", 'netns="none"',
          [l for l in text.splitlines() if 'netns="0"' in l][:5])
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=base.remaining(20))
    report = p.stdout.decode()
    check(p.returncode == 0 and report.strip() == "", "promtool check metrics on a scrape",
          "exit 0 and no findings", f"exit {p.returncode}: {report}")
    check(http_get(agent.url("/nope"))[0] == 404, "unknown path", 404, http_get(agent.url("/nope")))

    took = agent.stop()
    check(took < STOP_TIMEOUT, "SIGTERM to exit", f"< {STOP_TIMEOUT}s", took)
    check(http_get(agent.url("/healthz"))[0] == 0, "port after exit", "closed", "still answering")
    lines = [l for l in agent.stderr().splitlines() if l.strip()]
    check(lines, "agent log", "some lines", "none")
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise Failure("log.format json", "one JSON object per line", line)
        check({"time", "level", "msg"} <= set(obj), "JSON log fields", "time, level, msg", obj)
    check(any("ready" == json.loads(l)["msg"] for l in lines), "log", "a 'ready' line", lines)
    return f"promtool clean; agent stopped {took:.2f}s after SIGTERM"


def scenario_bad_config(ctx):
    """A typo or a bad value stops start-up with the key's path; a busy port says so."""
    cases = [
        ("counters:\n  drop_max_entries: 10\n", "counters.drop_max_entries"),
        ("counters:\n  drops_max_entries: -5\n", "counters.drops_max_entries"),
        ("metrics:\n  max_series: lots\n", "metrics.max_series"),
        ("metrics:\n  visit_pod_labels: yes\n", "metrics.visit_pod_labels"),
        ("probe:\n  backend: fentry\n", "probe.backend"),
        ("counters:\n  visit_tracepoints: [no_such_tracepoint]\n", "no_such_tracepoint"),
    ]
    for n, (yaml_text, key) in enumerate(cases):
        d = os.path.join(ctx.workdir, f"case{n}")
        os.makedirs(d)
        agent = ctx.track(Agent(ctx.binary, d, extra_yaml=yaml_text)).start()
        try:
            rc = agent.proc.wait(timeout=base.remaining(20))
        except subprocess.TimeoutExpired:
            raise Failure(f"pwru-agent with {yaml_text!r}", "exit 2", "still running")
        err = agent.stderr()
        check(rc == 2, f"exit status with {yaml_text!r}", 2, f"{rc}: {err}")
        check(key in err, f"message for {yaml_text!r}", f"names {key}", err)
    # The port is taken: exit 1 with the address in the message, nothing left attached.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        d = os.path.join(ctx.workdir, "busy")
        os.makedirs(d)
        agent = ctx.track(Agent(ctx.binary, d, port=busy.getsockname()[1])).start()
        rc = agent.proc.wait(timeout=base.remaining(20))
        err = agent.stderr()
        check(rc == 1 and f"127.0.0.1:{agent.port}" in err, "pwru-agent on a busy port",
              "exit 1 naming the address", f"{rc}: {err}")
    p = subprocess.run([ctx.binary, "--config", "/nonexistent/pwru-agent.yaml"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=base.remaining(20))
    check(p.returncode == 2 and b"/nonexistent/pwru-agent.yaml" in p.stderr, "missing --config file",
          "exit 2 naming the file", p)


def scenario_pods(ctx):
    """Drops in a test pod's netns carry namespace/pod from the (fake) API server; deleted, its series go."""
    topo = ctx.topology()
    api = ctx.track(FakeApiServer(ctx.workdir).start())
    pod = ctx.track(PodProcess(ctx.workdir, topo.ns_b))
    api.control("add", {"uid": pod.uid, "namespace": "shop", "name": "web-0", "node": "n1"})
    api.control("add", {"uid": "0000-other-node", "namespace": "shop", "name": "web-1", "node": "n2"})
    agent = ctx.track(Agent(ctx.binary, ctx.workdir, extra_yaml=api.agent_yaml(grace=3))).start().wait_ready()

    send_udp(topo, topo.ns_a, topo.ip_b, 9999, DATAGRAMS)   # closed port in the pod: NO_SOCKET there
    wait_until(lambda: (pod_drop_series(agent, "shop", "web-0") or 0) >= DATAGRAMS, QUERY_TIMEOUT,
               'pwru_skb_drops_total{namespace="shop",pod="web-0",reason="NO_SOCKET"}')
    check(pod_drop_series(agent, "shop", "web-0") == DATAGRAMS, "NO_SOCKET drops of shop/web-0", DATAGRAMS,
          pod_drop_series(agent, "shop", "web-0"))
    # metrics.visit_pod_labels defaults to true: visits are by pod like drops.
    pod_visits = (("function", "netif_receive_skb"), ("namespace", "shop"), ("netns", ""), ("pod", "web-0"))
    wait_until(lambda: visit_series(agent, "netif_receive_skb").get(pod_visits, 0) >= DATAGRAMS, QUERY_TIMEOUT,
               'pwru_skb_function_visits_total{function="netif_receive_skb",namespace="shop",pod="web-0"}')
    status, text = http_get(agent.url("/metrics"))
    check(f'netns="{topo.inode_b}"' not in text, "series of the pod's netns", "labelled by pod only",
          [l for l in text.splitlines() if str(topo.inode_b) in l][:5])
    check(metric_value(agent, "pwru_kubernetes_synced") == 1.0, "pwru_kubernetes_synced", 1,
          metric_value(agent, "pwru_kubernetes_synced"))
    check(metric_value(agent, "pwru_kubernetes_pods") == 1.0, "pwru_kubernetes_pods (this node's only)", 1,
          metric_value(agent, "pwru_kubernetes_pods"))
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=base.remaining(20))
    check(p.returncode == 0 and not p.stdout.strip(), "promtool check metrics with pod labels", "clean",
          p.stdout.decode())

    # Deleted through the watch: the series stays for the grace, then goes.
    deleted_at = time.monotonic()
    api.control("delete", {"uid": pod.uid})
    wait_until(lambda: pod_drop_series(agent, "shop", "web-0") is None, QUERY_TIMEOUT,
               "the deleted pod's series to disappear")
    gone_after = time.monotonic() - deleted_at
    check(gone_after >= 2.5, "time the deleted pod's series stayed", ">= the 3 s grace (less scrape jitter)",
          f"{gone_after:.1f}s")
    status, text = http_get(agent.url("/metrics"))
    check(f'netns="{topo.inode_b}"' not in text, "series of the deleted pod's netns", "none (not unlabelled)",
          [l for l in text.splitlines() if str(topo.inode_b) in l][:5])
    took = agent.stop()
    return f"labelled, gone {gone_after:.1f}s after delete (grace 3s); stopped {took:.2f}s after SIGTERM"


def scenario_api_down(ctx):
    """The API server is down when the agent starts: metrics at once, pod labels soon after it comes up.

    Runs with metrics.visit_pod_labels false: the drops get their pod labels, the visits stay node totals."""
    topo = ctx.topology()
    api = ctx.track(FakeApiServer(ctx.workdir))  # certificates made, not started
    pod = ctx.track(PodProcess(ctx.workdir, topo.ns_b))
    started = time.monotonic()
    agent = ctx.track(Agent(ctx.binary, ctx.workdir,
                            extra_yaml=api.agent_yaml() + "metrics:\n  visit_pod_labels: false\n")).start().wait_ready()
    ready_after = time.monotonic() - started
    send_udp(topo, topo.ns_a, topo.ip_b, 9999, DATAGRAMS)
    unlabelled = None

    def unlabelled_series():
        nonlocal unlabelled
        status, text = http_get(agent.url("/metrics"))
        unlabelled = [l for l in text.splitlines()
                      if l.startswith("pwru_skb_drops_total{") and f'netns="{topo.inode_b}"' in l]
        return status == 200 and unlabelled

    wait_until(unlabelled_series, QUERY_TIMEOUT, "drops in the netns, by inode, while the API server is down")
    check(metric_value(agent, "pwru_kubernetes_synced") == 0.0, "pwru_kubernetes_synced with no API server", 0,
          metric_value(agent, "pwru_kubernetes_synced"))
    # Let the agent's back-off grow for a while before the API server comes up.
    time.sleep(8)
    check((metric_value(agent, "pwru_kubernetes_api_failures_total") or 0) >= 2,
          "pwru_kubernetes_api_failures_total while down", ">= 2", metric_value(agent, "pwru_kubernetes_api_failures_total"))

    api.start()
    up = time.monotonic()
    api.control("add", {"uid": pod.uid, "namespace": "shop", "name": "web-0", "node": "n1"})
    wait_until(lambda: pod_drop_series(agent, "shop", "web-0") == DATAGRAMS, LABELS_AFTER_API_TIMEOUT,
               f"shop/web-0 labels within {LABELS_AFTER_API_TIMEOUT}s of the API server starting")
    labelled_after = time.monotonic() - up

    # Lost after the first LIST: synced goes to 0 (what was listed keeps its
    # labels), and back to 1 once the watch reconnects.
    api.control("outage", {"down": True})
    lost_at = time.monotonic()
    wait_until(lambda: metric_value(agent, "pwru_kubernetes_synced") == 0.0, 20,
               "pwru_kubernetes_synced 0 once a synced agent's API server fails")
    unsynced_after = time.monotonic() - lost_at
    check(pod_drop_series(agent, "shop", "web-0") == DATAGRAMS, "shop/web-0's drops during the outage",
          "still labelled", pod_drop_series(agent, "shop", "web-0"))
    time.sleep(3)  # a few failed retries
    api.control("outage", {"down": False})
    back = time.monotonic()
    wait_until(lambda: metric_value(agent, "pwru_kubernetes_synced") == 1.0, LABELS_AFTER_API_TIMEOUT,
               f"pwru_kubernetes_synced 1 within {LABELS_AFTER_API_TIMEOUT}s of the API server's return")
    resynced_after = time.monotonic() - back
    # The pod's netns is known now, and its visits are still in the node's
    # one series per function: nothing else of this function is exported.
    node_total = (("function", "netif_receive_skb"), ("namespace", ""), ("netns", "all"), ("pod", ""))
    visits = visit_series(agent, "netif_receive_skb")
    check(list(visits) == [node_total] and visits[node_total] >= DATAGRAMS,
          "netif_receive_skb visits with visit_pod_labels false",
          f'one series {{namespace="",pod="",netns="all"}} >= {DATAGRAMS}', visits)
    status, text = http_get(agent.url("/metrics"))
    stray = [labels for labels in scrape_series(text, "pwru_skb_function_visits_total")
             if dict(labels).get("netns") != "all"]
    check(not stray, "visit series with visit_pod_labels false", 'all netns="all"', stray[:5])
    took = agent.stop()
    return (f"ready {ready_after:.1f}s after start with the API down; labels {labelled_after:.1f}s after it "
            f"came up; a later outage: synced 0 after {unsynced_after:.1f}s, 1 again {resynced_after:.1f}s after "
            f"its end; stopped {took:.2f}s after SIGTERM")


DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "pwru-agent", "dashboards",
                         "pwru-agent.json")
# What Grafana puts in for its variables when "All" is selected, and for its
# interval macros: every expression must run as Prometheus gets it.
DASHBOARD_SUBSTITUTIONS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s", "$node": ".*",
                           "$namespace": ".*", "$pod": ".*"}


def dashboard_queries():
    """(where, PromQL) of every panel target and variable of the dashboard."""
    with open(DASHBOARD) as f:
        board = json.load(f)
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queries.append((f'panel "{panel["title"]}" {target["refId"]}', target["expr"]))
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.*), *(\w+)\)", var["query"]["query"])
        check(m, f"variable {var['name']}", "label_values(SELECTOR, LABEL)", var["query"]["query"])
        queries.append((f"variable {var['name']}", f"count by ({m.group(2)}) ({m.group(1)})"))
    out = []
    for where, expr in queries:
        for k, v in DASHBOARD_SUBSTITUTIONS.items():
            expr = expr.replace(k, v)
        check("$" not in expr, f"{where}", "only the variables the test knows", expr)
        out.append((where, expr))
    return out


def scenario_dashboard(ctx):
    """Every query of the Grafana dashboard runs against Prometheus scraping a live agent, on metrics it exports."""
    topo = ctx.topology()
    api = ctx.track(FakeApiServer(ctx.workdir).start())
    pod = ctx.track(PodProcess(ctx.workdir, topo.ns_b))
    api.control("add", {"uid": pod.uid, "namespace": "shop", "name": "web-0", "node": "n1"})
    agent = ctx.track(Agent(ctx.binary, ctx.workdir, extra_yaml=api.agent_yaml())).start().wait_ready()
    prom = ctx.track(Prometheus(ctx.workdir, agent.port, target_labels={"node": "n1"}).start())
    wait_until(lambda: (metric_value(agent, "pwru_kubernetes_pod_netns") or 0) >= 1, 30, "shop/web-0's netns")
    send_udp(topo, topo.ns_a, topo.ip_b, 9999, DATAGRAMS)
    http_get(agent.url("/v1/traces"))  # a GET lists traces: pwru_trace_requests_total stays as it is
    status, _ = http_get(agent.url("/metrics"))
    check(status == 200, "/metrics", 200, status)
    # One refused trace request, so that pwru_trace_requests_total has a series.
    req = urllib.request.Request(agent.url("/v1/traces"), data=b"{\"bogus\": 1}", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
    except urllib.error.HTTPError as e:
        check(e.code == 400, "a bad trace request", 400, e.code)
    drops = 'sum(pwru_skb_drops_total{namespace="shop",pod="web-0",node="n1"})'
    prom.wait_for(drops, lambda r: r and r[0][1] >= DATAGRAMS, "shop/web-0's drops in Prometheus")
    time.sleep(3)  # a few more scrapes, so rate() has samples

    _, text = http_get(agent.url("/metrics"))
    exported = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
    queries = dashboard_queries()
    empty = []
    for where, expr in queries:
        for name in set(re.findall(r"\bpwru_\w+", expr)):
            check(name in exported, f"metric {name} in {where}", "exported by the agent", sorted(exported))
        rows = prom.query(expr)  # fails the test on any Prometheus error
        if not rows:
            empty.append(where)
    # The panels that must show this test's traffic.
    for must in ("Drops per second by function and reason", "Drops per second by pod", "Visits per second by hook",
                 "variable node", "variable namespace", "variable pod"):
        check(not [w for w in empty if must in w], f"data for {must}", "some", f"empty: {empty}")
    by_pod = prom.query('sum by (namespace, pod) (rate(pwru_skb_drops_total{node=~".*"}[1m]))')
    check(any(r[0].get("pod") == "web-0" for r in by_pod), "drops by pod", "a shop/web-0 row", by_pod)
    return f"{len(queries)} dashboard queries ran; {len(queries) - len(empty)} with data (empty: {empty})"


# The target labels the Prometheus Operator gives every target of a
# ServiceMonitor (its relabeling of the Kubernetes SD meta labels), here
# for the agent pod pwru/pwru-agent-x7k2p on node n1.
OPERATOR_TARGET_LABELS = {"namespace": "pwru", "pod": "pwru-agent-x7k2p", "service": "pwru-agent",
                          "endpoint": "http", "container": "pwru-agent", "node": "n1"}


class OperatorPrometheus(Prometheus):
    """Prometheus scraping the agent twice, with the Operator's target labels: job "chart" with
    honor_labels true (the chart's ServiceMonitor, honorLabels: true) and job "operator-default" with the
    Operator's default, honor_labels false."""

    def __init__(self, workdir, target_port):
        super().__init__(workdir, target_port)
        labels = "".join(f"          {k}: '{v}'\n" for k, v in OPERATOR_TARGET_LABELS.items())
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n")
            for job, honor in (("chart", "true"), ("operator-default", "false")):
                f.write(f"  - job_name: {job}\n    honor_labels: {honor}\n    static_configs:\n"
                        f"      - targets: ['127.0.0.1:{target_port}']\n        labels:\n{labels}")


def scenario_operator_labels(ctx):
    """Scraped as the Prometheus Operator scrapes the chart's ServiceMonitor, a drop in pod shop/web-0 is
    queried as namespace="shop",pod="web-0", and the node's own drops carry no pod, not the agent's; the
    Operator's default (honor_labels false) shows what goes wrong without honorLabels."""
    topo = ctx.topology()
    api = ctx.track(FakeApiServer(ctx.workdir).start())
    pod = ctx.track(PodProcess(ctx.workdir, topo.ns_b))
    api.control("add", {"uid": pod.uid, "namespace": "shop", "name": "web-0", "node": "n1"})
    agent = ctx.track(Agent(ctx.binary, ctx.workdir, extra_yaml=api.agent_yaml())).start().wait_ready()
    prom = ctx.track(OperatorPrometheus(ctx.workdir, agent.port).start())
    wait_until(lambda: (metric_value(agent, "pwru_kubernetes_pod_netns") or 0) >= 1, 30, "shop/web-0's netns")
    send_udp(topo, topo.ns_a, topo.ip_b, 9999, DATAGRAMS)
    # A closed port on the host's loopback: a drop of the node itself.
    host_port = 20000 + os.getpid() % 20000
    for _ in range(DATAGRAMS):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"pwru-agent e2e\n", ("127.0.0.1", host_port))

    agent_pod = OPERATOR_TARGET_LABELS["pod"]
    shop = 'sum(pwru_skb_drops_total{job="chart",namespace="shop",pod="web-0",reason="NO_SOCKET"})'
    prom.wait_for(shop, lambda r: r and r[0][1] >= DATAGRAMS, "shop/web-0's drops under the chart's labels")
    host = ('sum(pwru_skb_drops_total{job="chart",namespace="",pod="",netns="",reason="NO_SOCKET",'
            'function="__udp4_lib_rcv"})')
    prom.wait_for(host, lambda r: r and r[0][1] >= DATAGRAMS, "the node's own drops, with no pod")
    on_agent = prom.query(f'pwru_skb_drops_total{{job="chart",pod="{agent_pod}"}}')
    check(not on_agent, "drops attributed to the agent's own pod (honorLabels)", "none", on_agent[:3])
    exported = prom.query('pwru_skb_drops_total{job="chart",exported_pod=~".+"}')
    check(not exported, "exported_pod series (honorLabels)", "none", exported[:3])
    for_node = prom.query(f'sum(pwru_skb_drops_total{{job="chart",node="n1",namespace="shop",pod="web-0"}})')
    check(for_node and for_node[0][1] >= DATAGRAMS, "the node label beside the pod's", "the target's node n1",
          for_node)

    # The control: the Operator's default hides the pod and blames the agent.
    control = prom.wait_for('sum(pwru_skb_drops_total{job="operator-default",exported_namespace="shop",'
                            'exported_pod="web-0"})', lambda r: r and r[0][1] >= DATAGRAMS,
                            "the control's drops as exported_namespace/exported_pod")
    blamed = prom.query(f'sum(pwru_skb_drops_total{{job="operator-default",namespace="pwru",pod="{agent_pod}",'
                        f'exported_pod=""}})')
    check(blamed and blamed[0][1] >= DATAGRAMS, "the control's host drops", f"attributed to {agent_pod}", blamed)
    return (f"chart labels: shop/web-0 NO_SOCKET drops under namespace=\"shop\",pod=\"web-0\", host drops with "
            f"empty pod, none on {agent_pod}; Operator default: exported_pod=web-0 ({control[0][1]:.0f}), "
            f"host drops blamed on the agent pod ({blamed[0][1]:.0f})")


# The chart's PrometheusRule groups as chart.render wrote them (ctest fixture chart_rules).
ALERT_RULES_ENV = "PWRU_ALERT_RULES"
# Agent n1's traces get the smallest ring the configuration takes, and a
# flood of more datagrams than it holds events: PwruEventsLost.
TINY_TRACE_RING = 4096
LOSS_DATAGRAMS = 3000
# Agent B: a series cap and a drops map small enough to overflow with a few
# network namespaces. Visits are counted on one tracepoint, per node, so that
# only drop keys reach the caps.
TINY_MAX_SERIES = 4
TINY_DROPS_MAP = 16
FOLD_NETNS = 6       # > TINY_MAX_SERIES new drop keys: folded, still fit in the map
OVERFLOW_NETNS = 14  # FOLD_NETNS + this > TINY_DROPS_MAP: the map is full
SPIKE_DATAGRAMS = 900  # over rate(...[5m]): about 3/s, above the chart's dropSpike.minRate 1


def chart_alert_rules():
    """The chart's rule groups with every `for:` set to 0s: the conditions are
    the chart's own expressions, unchanged; only the waiting is shortened."""
    import yaml
    path = os.environ.get(ALERT_RULES_ENV)
    check(path and os.path.isfile(path), f"the chart's alert rules (${ALERT_RULES_ENV})",
          "a rules file written by ctest chart.render (ctest --test-dir build -R 'chart.render|agent.alerts' "
          "runs both), or the variable set to one", path or "unset")
    with open(path) as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    check(rules and all("alert" in r and r.get("for") for r in rules), f"alert rules in {path}",
          "alerting rules with for:", rules)
    for r in rules:
        r["for"] = "0s"
    return doc, {r["alert"] for r in rules}


class StaticExporter:
    """An HTTP server in this process serving one metrics text, changed by the test.

    Stands in for kube-state-metrics (it is not the agent, nor kube-state-metrics:
    only the one series PwruAgentsMissing joins with the agents' real `up`)."""

    def __init__(self, text):
        import http.server
        import threading
        self.text = text
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = exporter.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kill(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def desired_agents(n):
    return (f'kube_daemonset_status_desired_number_scheduled{{namespace="pwru",daemonset="pwru-agent"}} {n}\n')


class AlertPrometheus(Prometheus):
    """Prometheus evaluating the chart's rules every second. The agents are found through a file_sd
    file the test rewrites, as a new node's agent appears to Kubernetes service discovery; the
    stand-in kube-state-metrics is scraped as job kube-state-metrics."""

    def __init__(self, workdir, rules, ksm_port):
        super().__init__(workdir, 0)
        import yaml
        with open(os.path.join(self.dir, "rules.yaml"), "w") as f:
            yaml.safe_dump(rules, f, sort_keys=False)
        self.targets = os.path.join(self.dir, "targets.json")
        self.set_targets({})
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                    "rule_files: [rules.yaml]\nscrape_configs:\n"
                    "  - job_name: pwru-agent\n    file_sd_configs:\n"
                    f"      - files: ['{self.targets}']\n        refresh_interval: 1s\n"
                    "  - job_name: kube-state-metrics\n    honor_labels: true\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{ksm_port}']\n")

    def set_targets(self, nodes):
        """nodes: {node name: agent port}."""
        tmp = self.targets + ".tmp"
        with open(tmp, "w") as f:
            json.dump([{"targets": [f"127.0.0.1:{port}"], "labels": {"node": node}}
                       for node, port in nodes.items()], f)
        os.replace(tmp, self.targets)  # file_sd must never read half a file

    def api(self, path):
        status, body = http_get(f"http://127.0.0.1:{self.port}{path}")
        check(status == 200, f"Prometheus {path}", "HTTP 200", f"{status}: {body}")
        return json.loads(body)["data"]

    def alerts(self):
        return self.api("/api/v1/alerts")["alerts"]

    def wait_evaluations(self, count=2):
        """Waits for `count` more evaluations of the rule group; every rule must have evaluated cleanly
        (a rule that errors would stay quiet for the wrong reason)."""
        def last():
            groups = self.api("/api/v1/rules")["groups"]
            return groups[0]["lastEvaluation"] if groups else None
        seen = [last()]
        wait_until(lambda: seen.append(last()) or len(set(seen)) > count, 10, f"{count} rule evaluations")
        for g in self.api("/api/v1/rules")["groups"]:
            for r in g["rules"]:
                check(r["health"] == "ok", f"rule {r['name']}", "health ok", r)


def alert_matches(alert, pattern):
    name, labels = pattern
    return alert["labels"]["alertname"] == name and all(alert["labels"].get(k) == v for k, v in labels.items())


def expect_alerts(prom, step, required, allowed=()):
    """Waits until every `required` (alertname, label subset) fires and every other alert is one of
    `allowed`; then checks it still holds two evaluations later. Returns the firing alerts."""
    last = []

    def settled():
        nonlocal last
        last = prom.alerts()
        return (all(a["state"] == "firing" for a in last)
                and all(any(alert_matches(a, p) for a in last) for p in required)
                and all(any(alert_matches(a, p) for p in list(required) + list(allowed)) for a in last))

    def shown():
        return "; ".join(f"{a['labels']['alertname']} {a['state']} "
                         f"{ {k: v for k, v in a['labels'].items() if k not in ('alertname', 'severity')} }"
                         for a in last) or "none"

    want = (", ".join(f"{n} {l}" for n, l in required) or "no alert") + \
        (f" (also allowed: {', '.join(f'{n} {l}' for n, l in allowed)})" if allowed else "")
    try:
        wait_until(settled, QUERY_TIMEOUT, step)
    except Failure:
        raise Failure(f"alerts: {step}", want, f"{shown()}\n--- prometheus log:\n{prom.log()}")
    prom.wait_evaluations()
    check(settled(), f"alerts: {step}, two evaluations later", want, shown())
    return last


class NetnsSet:
    """Network namespaces each holding one UDP drop (NO_SOCKET, on its loopback): a new drop key apiece."""

    def __init__(self):
        self.names = []

    def add(self, count):
        for _ in range(count):
            name = f"pwa-{os.getpid()}-{len(self.names)}"
            sh(["ip", "netns", "add", name])
            self.names.append(name)
            sh(["ip", "netns", "exec", name, "sh", "-c",
                "ip link set lo up && echo pwru-agent e2e | nc -u -w0 127.0.0.1 9"])
        return self

    def flood(self, name, count):
        """`count` datagrams to a closed port in netns `name`, paced so the backlog queue drops none."""
        sh(["ip", "netns", "exec", name, "/usr/bin/python3", "-c",
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for i in range({count}):\n"
            "    s.sendto(b'pwru-agent e2e', ('127.0.0.1', 9))\n"
            "    if i % 50 == 49: time.sleep(0.002)\n"])

    def inode(self, name):
        return os.stat(f"/run/netns/{name}").st_ino

    def kill(self):
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.names = []


def lossy_trace(agent, netns, name):
    """Traces netns `name` on `agent` (auth none, its ring TINY_TRACE_RING) while LOSS_DATAGRAMS go unpaced to
    a closed port there; up to 3 rounds until the trace's summary counts a loss. Returns the events lost."""
    import http.client
    import threading
    body = json.dumps({"netns": netns.inode(name), "filter": "udp port 9", "duration": "6s",
                       "max_events": 1000000})
    for _ in range(3):
        answer = {}

        def run_trace():
            conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=60)
            try:
                conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/json"})
                res = conn.getresponse()
                answer["status"], answer["lines"] = res.status, res.read().decode().splitlines()
            finally:
                conn.close()

        thread = threading.Thread(target=run_trace)
        thread.start()
        wait_until(lambda: json.loads(http_get(agent.url("/v1/traces"))[1])["traces"], 20, "the lossy trace to start")
        time.sleep(2.0)  # listed while it still attaches
        sh(["ip", "netns", "exec", name, "/usr/bin/python3", "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for i in range({LOSS_DATAGRAMS}):\n"
            "    s.sendto(b'pwru-agent e2e', ('127.0.0.1', 9))\n"])
        thread.join(30)
        check(answer.get("status") == 200 and answer["lines"], "the lossy trace", "HTTP 200 with a summary", answer)
        summary = json.loads(answer["lines"][-1]).get("summary", {})
        if summary.get("events_lost"):
            return summary["events_lost"]
    raise Failure("a trace with a 4 KiB ring under a flood, 3 rounds", "events lost", summary)


def scenario_alerts(ctx):
    """The chart's alert rules, loaded by a real Prometheus scraping real agents: quiet while the agent
    is healthy, and each alert firing on its own induced condition while the others stay quiet."""
    rules, alerts = chart_alert_rules()
    api = ctx.track(FakeApiServer(ctx.workdir).start())
    for node in ("n1", "n2"):  # each agent's configuration file in its own directory
        os.makedirs(os.path.join(ctx.workdir, node))
    healthy = ctx.track(Agent(ctx.binary, os.path.join(ctx.workdir, "n1"), extra_yaml=(
        api.agent_yaml(node="n1") + f"traces:\n  ring_buffer_bytes: {TINY_TRACE_RING}\n"))).start()
    healthy.wait_ready()
    wait_until(lambda: metric_value(healthy, "pwru_kubernetes_synced") == 1.0, 30, "agent n1 synced with the API")
    ksm = ctx.track(StaticExporter(desired_agents(1)))
    prom = ctx.track(AlertPrometheus(ctx.workdir, rules, ksm.port).start())
    prom.set_targets({"n1": healthy.port})
    prom.wait_for('up{job="pwru-agent",node="n1"}', lambda r: r and r[0][1] == 1.0, "Prometheus scraping agent n1")
    prom.wait_for('kube_daemonset_status_desired_number_scheduled', lambda r: bool(r), "the stand-in kube-state-metrics")
    prom.wait_evaluations(3)
    expect_alerts(prom, "a healthy agent", [])
    steps = ["healthy: none"]

    # A second node's agent that cannot reach its API server (certificates
    # made, never started), with tiny caps for the steps after this one.
    unreachable = ctx.track(FakeApiServer(os.path.join(ctx.workdir, "n2")))
    tiny = ctx.track(Agent(ctx.binary, os.path.join(ctx.workdir, "n2"), extra_yaml=(
        unreachable.agent_yaml(node="n2")
        + f"counters:\n  drops_max_entries: {TINY_DROPS_MAP}\n  visit_tracepoints: [netif_receive_skb]\n"
        + f"metrics:\n  max_series: {TINY_MAX_SERIES}\n  visit_pod_labels: false\n"))).start()
    tiny.wait_ready()
    prom.set_targets({"n1": healthy.port, "n2": tiny.port})
    prom.wait_for('up{job="pwru-agent",node="n2"}', lambda r: r and r[0][1] == 1.0, "Prometheus scraping agent n2")
    ksm.text = desired_agents(2)  # the DaemonSet now wants two, and two are up
    n2 = {"node": "n2"}
    fired = [("PwruKubernetesNotSynced", n2)]
    expect_alerts(prom, "agent n2 without its API server", fired)
    steps.append("API server unreachable: PwruKubernetesNotSynced")

    netns = ctx.track(NetnsSet()).add(FOLD_NETNS)
    # Drops and drop bytes share one series count: both fold together.
    fired += [("PwruSeriesFolded", {**n2, "metric": m}) for m in ("pwru_skb_drops_total", "pwru_skb_drop_bytes_total")]
    expect_alerts(prom, f"{FOLD_NETNS} new drop keys over max_series {TINY_MAX_SERIES}", fired)
    folded = prom.query('pwru_metrics_folded_keys{node="n2",metric="pwru_skb_drops_total"}')
    steps.append(f"{FOLD_NETNS} netns: PwruSeriesFolded ({folded[0][1]:.0f} keys folded)")

    netns.add(OVERFLOW_NETNS)
    fired.append(("PwruUncountedPackets", {**n2, "map": "drops"}))
    expect_alerts(prom, f"{FOLD_NETNS + OVERFLOW_NETNS} drop keys in a {TINY_DROPS_MAP}-entry map", fired)
    uncounted = prom.query('pwru_skb_uncounted_packets_total{node="n2",map="drops"}')
    steps.append(f"{OVERFLOW_NETNS} more: PwruUncountedPackets ({uncounted[0][1]:.0f} packets)")

    # A reason new to the node (no series an hour earlier) above minRate:
    # the spike alert's "unless ... offset 1h" branch. From here on other
    # spikes are allowed, not required: agent n2 sees the flood too (folded or
    # uncounted), and killing it below purges socket queues (QUEUE_PURGE, seen
    # on n1), both real new reasons.
    netns.flood(netns.names[0], SPIKE_DATAGRAMS)
    spike = ("PwruDropRateSpike", {"node": "n1", "reason": "NO_SOCKET"})
    fired.append(spike)
    other_spikes = [("PwruDropRateSpike", {})]
    expect_alerts(prom, f"{SPIKE_DATAGRAMS} NO_SOCKET drops in seconds", fired, other_spikes)
    steps.append(f"{SPIKE_DATAGRAMS} drops: PwruDropRateSpike n1/NO_SOCKET")

    lost = lossy_trace(healthy, netns, netns.names[0])
    fired.append(("PwruEventsLost", {"node": "n1"}))
    expect_alerts(prom, f"a trace with a {TINY_TRACE_RING}-byte ring lost {lost} events", fired, other_spikes)
    exported = metric_value(healthy, "pwru_events_lost_total")
    check(exported >= lost, "pwru_events_lost_total of agent n1", f">= the trace's {lost}", exported)
    steps.append(f"a trace losing {lost} events: PwruEventsLost n1")

    tiny.kill()
    # Killed, agent n2's series go stale: its instant-vector alerts resolve;
    # the range-vector ones (increase, rate over minutes) may still fire.
    down = [("PwruAgentDown", n2), ("PwruAgentsMissing", {})]
    # Range-vector alerts of n1 (losses, the spike) last their window.
    still = [("PwruEventsLost", {"node": "n1"}), spike]
    expect_alerts(prom, "agent n2 killed", down + still, [("PwruUncountedPackets", n2)] + other_spikes)
    steps.append("agent n2 killed: PwruAgentDown and PwruAgentsMissing; its NotSynced and SeriesFolded resolved")

    # Agent n1 was synced: its API server failing later is an alert too.
    api.control("outage", {"down": True})
    lost_api = [("PwruKubernetesNotSynced", {"node": "n1"})]
    expect_alerts(prom, "agent n1's API server down after the first LIST", down + still + lost_api,
                  [("PwruUncountedPackets", n2)] + other_spikes)
    api.control("outage", {"down": False})
    expect_alerts(prom, "agent n1's API server back", down + still, [("PwruUncountedPackets", n2)] + other_spikes)
    steps.append("n1's API server down and back: PwruKubernetesNotSynced n1, then resolved")
    induced = {name for name, _ in fired + down + lost_api}
    check(induced == alerts, "alerts covered", sorted(alerts), sorted(induced))
    healthy.stop()
    return "; ".join(steps)


CHURN_PODS = 1000        # netns created and deleted, each a pod of the fake API server
CHURN_LIVE = 20          # pods alive at once
# A pod lives at least one of the agent's periodic /proc scans (agent_yaml's rescan_interval_seconds 2, and
# a margin): a netns no scan ever saw cannot be known as a pod's, so its counters would stay as any
# non-pod netns' do. Real pods live far longer, and every change of theirs triggers a scan.
CHURN_MIN_LIFE = 3.0
CHURN_GRACE = 2          # deleted_pod_grace_seconds
CHURN_SAMPLE_EVERY = 100  # these pods' last counts are checked before and after their deletion
CHURN_SAMPLE_DATAGRAMS = 3
# Peaks while churning: pods alive or in their grace period hold entries, the rest must not. Leaking, the
# 1,000 pods would hold ~1,000 drop entries, ~4,000 visit keys (slots or entries) and ~5,000 series.
CHURN_BOUND_DROPS = 300
CHURN_BOUND_VISITS = 1200
CHURN_BOUND_SERIES = 1500


class AgentMaps:
    """The agent's counter maps, read with bpftool: hash entries and cache slots in use."""

    NAMES = ("drop_counts", "visit_counts", "visit_cache")

    def __init__(self, agent_pid):
        # The agent's maps by the ids in its fds' fdinfo (this bpftool lists no owner pids), named by bpftool.
        held = set()
        for fd in os.listdir(f"/proc/{agent_pid}/fd"):
            try:
                if os.readlink(f"/proc/{agent_pid}/fd/{fd}") != "anon_inode:bpf-map":
                    continue
                with open(f"/proc/{agent_pid}/fdinfo/{fd}") as f:
                    held.update(int(line.split()[1]) for line in f if line.startswith("map_id:"))
            except OSError:
                continue  # closed meanwhile
        _, out, _ = sh(["bpftool", "-j", "map", "show"])
        self.ids = {}
        for m in json.loads(out):
            if m.get("name") in self.NAMES and m["id"] in held:
                check(m["name"] not in self.ids, f"one {m['name']} map held by the agent", "one",
                      f"ids {self.ids.get(m['name'])} and {m['id']}")
                self.ids[m["name"]] = m["id"]
        check(set(self.ids) == set(self.NAMES), "the agent's counter maps (its fds' map ids in bpftool map show)",
              sorted(self.NAMES), sorted(self.ids))

    def dump(self, name):
        _, out, _ = sh(["bpftool", "-j", "map", "dump", "id", str(self.ids[name])], timeout=60)
        return json.loads(out)

    def read(self, netns):
        """{"drop_counts": entries, "visit_counts": entries, "visit_cache": slots in use over all CPUs}, of the
        netns in `netns` only: the machine may run other tests' namespaces meanwhile."""
        out = {name: sum(1 for e in self.dump(name) if e["formatted"]["key"]["netns"] in netns)
               for name in ("drop_counts", "visit_counts")}
        slots = 0
        for entry in self.dump("visit_cache"):
            for per_cpu in entry["formatted"]["values"]:
                slots += sum(1 for slot in per_cpu["value"]["slot"]
                             if slot["packets"] != 0 and slot["key"]["netns"] in netns)
        out["visit_cache"] = slots
        return out


def churn_series_count(agent, netns):
    """Series of the churned pods: labelled with their namespace, or (unresolved) with one of their inodes."""
    status, text = http_get(agent.url("/metrics"))
    check(status == 200, "GET /metrics", 200, status)
    inodes = {str(n) for n in netns}
    return sum(1 for name in ("pwru_skb_drops_total", "pwru_skb_function_visits_total")
               for labels in scrape_series(text, name)
               if dict(labels).get("namespace") == "churn" or dict(labels).get("netns") in inodes)


def scenario_churn(ctx):
    """1,000 pods' netns created and deleted with traffic: the agent's kernel maps, its visit cache and its
    series stay bounded, and a deleted pod's last counts are scraped before its series go."""
    check(shutil.which("bpftool") is not None, "bpftool", "installed (reads the agent's maps)", "not in PATH")
    api = ctx.track(FakeApiServer(ctx.workdir).start())
    agent = ctx.track(Agent(ctx.binary, ctx.workdir, extra_yaml=api.agent_yaml(grace=CHURN_GRACE))).start()
    agent.wait_ready()
    maps = AgentMaps(agent.proc.pid)
    inodes = set()  # every netns a churned pod had (the kernel reuses them)
    sender = os.path.join(ctx.workdir, "send_udp.py")
    with open(sender, "w") as f:
        f.write("import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "for _ in range(int(sys.argv[1])):\n    s.sendto(b'x', ('127.0.0.1', 9))\n")

    def start_pod(i, datagrams, delay=0):
        # The delay keeps a checked pod's traffic clear of a race the test cannot control: the kernel gives
        # a new netns the inode of one destroyed moments ago, and an erase of the old one's counters already
        # under way (decided by a scan just before the new netns existed) also erases what the new one
        # counted in those milliseconds.
        # nc -w0 may quit before it read its stdin: a checked pod's datagrams come from python, all of them.
        sends = (f"sleep {delay}; python3 {sender} {datagrams}" if datagrams > 1
                 else "printf x | nc -u -w0 127.0.0.1 9")
        uid = "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
        # Listed before its sandbox exists, as the kubelet only starts pods the API server has.
        api.control("add", {"uid": uid, "namespace": "churn", "name": f"pod-{i}", "node": "n1"})
        log = os.path.join(ctx.workdir, f"pod-{i}.log")
        pod = PodProcess(ctx.workdir, None, f"unshare -n sh -c 'ip link set lo up; {sends}; exec sleep 300' "
                         f"2>{log}", uid=uid)
        return ctx.track(pod)

    def delete_pod(pod):
        try:
            inodes.add(os.stat(f"/proc/{pod.proc.pid}/ns/net").st_ino)
        except OSError as e:
            raise Failure(f"netns of pod process {pod.proc.pid}", "readable", e)
        api.control("delete", {"uid": pod.uid})
        pod.kill()
        ctx.tracked.remove(pod)

    def oldest_after_min_life(live):
        pod, born = live.pop(0)
        time.sleep(max(0.0, born + CHURN_MIN_LIFE - time.monotonic()))
        return pod

    started = time.monotonic()
    live, peak, peak_series, samples = [], {"drop_counts": 0, "visit_counts": 0, "visit_cache": 0}, 0, 0
    for i in range(CHURN_PODS):
        sampled = i % CHURN_SAMPLE_EVERY == CHURN_SAMPLE_EVERY - 1
        pod = start_pod(i, CHURN_SAMPLE_DATAGRAMS, delay=0.5) if sampled else start_pod(i, 1)
        if sampled:
            name = f"pod-{i}"
            # At least: the kernel hands a new netns the inode of one destroyed moments ago, and while that
            # one's pod is in its grace period the agent takes the inode (and its counts) for the new pod.
            try:
                wait_until(lambda: (pod_drop_series(agent, "churn", name) or 0) >= CHURN_SAMPLE_DATAGRAMS,
                           QUERY_TIMEOUT, f'pwru_skb_drops_total{{namespace="churn",pod="{name}",'
                           f'reason="NO_SOCKET"}} >= {CHURN_SAMPLE_DATAGRAMS}')
            except Failure as f:
                inode = str(os.stat(f"/proc/{pod.proc.pid}/ns/net").st_ino)
                _, text = http_get(agent.url("/metrics"))
                with open(os.path.join(ctx.workdir, f"{name}.log")) as logf:
                    f.seen += f"; its stderr: {logf.read()!r}"
                f.seen += f"; its netns {inode}:\n" + "\n".join(
                    line for line in text.splitlines() if inode in line or f'pod="{name}"' in line or
                    line.startswith("pwru_kubernetes"))
                raise
            final = pod_drop_series(agent, "churn", name)
            delete_pod(pod)
            # Deleted, its netns destroyed: its last counts stay for the grace period.
            last = pod_drop_series(agent, "churn", name)
            check(last == final, f"{name}'s drops scraped right after its deletion", final, last)
            samples += 1
            now = maps.read(inodes)
            peak = {k: max(peak[k], now[k]) for k in peak}
            peak_series = max(peak_series, churn_series_count(agent, inodes))
        else:
            live.append((pod, time.monotonic()))
        while len(live) > CHURN_LIVE:
            delete_pod(oldest_after_min_life(live))
    while live:
        delete_pod(oldest_after_min_life(live))
    churn_took = time.monotonic() - started

    # Every pod is deleted: after the grace (plus a rescan and a scrape) their series, entries and slots go.
    # Other tests on this machine may make namespaces meanwhile, which the kernel gives the freed inodes of
    # the churned ones: only inodes no namespace has now are expected empty.
    def dead_inodes():
        alive = set()
        for path in [f"/proc/{p}/ns/net" for p in os.listdir("/proc") if p.isdigit()] + \
                [os.path.join("/run/netns", n) for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns")
                                                        else [])]:
            try:
                alive.add(os.stat(path).st_ino)
            except OSError:
                pass
        return inodes - alive

    def settled():
        dead = dead_inodes()
        return not any(maps.read(dead).values()) and churn_series_count(agent, dead) == 0
    try:
        wait_until(settled, CHURN_GRACE + 20, "the churned pods' entries, slots and series to go")
    except Failure:
        _, text = http_get(agent.url("/metrics"))
        dead = dead_inodes()
        left = [e["formatted"]["key"] for name in ("drop_counts", "visit_counts") for e in maps.dump(name)
                if e["formatted"]["key"]["netns"] in dead]
        left += [(cpu, slot["key"], slot["packets"]) for e in maps.dump("visit_cache")
                 for cpu, per_cpu in enumerate(e["formatted"]["values"]) for slot in per_cpu["value"]["slot"]
                 if slot["packets"] != 0 and slot["key"]["netns"] in dead]
        raise Failure("counter maps and series of 1,000 pods after they came and went", "none left",
                      f"{maps.read(dead)}, {churn_series_count(agent, dead)} series; left: {left[:30]}\n" +
                      "\n".join(line for line in text.splitlines() if 'namespace="churn"' in line or
                                 any(f'netns="{n}"' in line for n in inodes)))
    settled_after = time.monotonic() - started - churn_took
    # Bound while churning: what the pods alive or in their grace period hold (a pod's netns has a drop key,
    # a few visit keys, one slot per key and CPU), never what the 1,000 that passed held.
    check(peak["drop_counts"] <= CHURN_BOUND_DROPS, "peak drop_counts entries of churned pods",
          f"<= {CHURN_BOUND_DROPS}", peak)
    check(peak["visit_counts"] + peak["visit_cache"] <= CHURN_BOUND_VISITS,
          "peak visit_counts entries + visit cache slots of churned pods", f"<= {CHURN_BOUND_VISITS}", peak)
    check(peak_series <= CHURN_BOUND_SERIES, "peak series of churned pods", f"<= {CHURN_BOUND_SERIES}",
          peak_series)
    overflow = metric_value(agent, "pwru_skb_uncounted_packets_total")
    took = agent.stop()
    return (f"{CHURN_PODS} pods ({len(inodes)} distinct netns inodes) in {churn_took:.0f}s, {samples} checked "
            f"after deletion; churned pods' maps peak {peak}, {peak_series} series, none {settled_after:.1f}s "
            f"after the last deletion; uncounted {overflow}; stopped {took:.2f}s after SIGTERM")


class Context:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        self.topo = None
        self.tracked = []

    def topology(self):
        self.topo = Topology(self.workdir)
        self.topo.setup()
        return self.topo

    def track(self, thing):
        self.tracked.append(thing)
        return thing


def preflight(binary):
    return base.missing_prerequisites(binary, TOOLS, "iproute2, netcat-openbsd, nftables, prometheus")


def show_agent_failure(ctx, _failure):
    for thing in ctx.tracked:
        if isinstance(thing, Agent):
            print(f"--- agent stderr ({thing.config}):\n{thing.stderr()[-4000:]}", file=sys.stderr)


def teardown_agent(ctx):
    for thing in ctx.tracked:
        thing.kill()
    if ctx.topo is not None:
        ctx.topo.teardown()


def main(argv):
    scenarios = {name: globals()[f"scenario_{name}"] for name in SCENARIOS}
    # churn makes and deletes 1,000 pods: minutes, not seconds.
    deadline = 400.0 if argv[2:3] == ["churn"] else 150.0
    return base.scenario_main(argv, scenarios, preflight, Context, show_agent_failure, teardown_agent,
                              deadline=deadline)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
