#!/usr/bin/env python3
"""End-to-end tests of pwru-agent's trace API (POST /v1/traces and friends).

Usage (as root):  trace_e2e.py /path/to/bin/pwru-agent SCENARIO

The agent runs against the fake Kubernetes API server with a test "pod":
a process in a test network namespace and in a cgroup named as the
kubelet names it. Traffic stays inside network namespaces the test creates.
Missing root or tools is a failure, not a skip. Exit status: 0 pass, 1 fail.
"""

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import agent_e2e as agent_lib
import pwru_e2e as base
from agent_e2e import Agent, FakeApiServer, PodProcess, http_get
from pwru_e2e import Failure, check, sh, wait_until

SCENARIOS = ("pod_trace", "concurrent", "errors", "disconnect", "fuzz", "kube_auth", "forward", "track_skb",
             "pod_set")
TOKEN = "e2e-trace-token"
FUZZ_REQUESTS = 10000
FUZZ_SECONDS = 240.0
LINKS_GONE_WITHIN = 1.0  # the issue's bound: links detached within 1 s of the client leaving


def post(agent, body, token=TOKEN, timeout=30.0):
    """(status, [parsed JSON lines]) of a POST /v1/traces read to the end."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=base.remaining(timeout))
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/v1/traces", body=body if isinstance(body, bytes) else body.encode(), headers=headers)
        res = conn.getresponse()
        text = res.read().decode()
    finally:
        conn.close()
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            raise Failure("a trace response line", "one JSON object per line", line)
    return res.status, lines


def split_summary(lines, what):
    check(lines and "summary" in lines[-1], f"{what}: last line", '{"summary": ...}', lines[-3:])
    check(all("summary" not in l for l in lines[:-1]), f"{what}: summary lines", "exactly one, last", lines)
    return lines[:-1], lines[-1]["summary"]


def bpf_link_count(pid):
    """BPF links the process holds, from the kernel's fdinfo of its fds (a link
    fd's fdinfo has link_type). Other processes' links (another agent, a
    benchmark) do not count, as they would in `bpftool link list`."""
    count = 0
    fd_dir = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fd_dir):
        try:
            with open(os.path.join(fd_dir, fd)) as f:
                count += "link_type:" in f.read()
        except OSError:  # closed meanwhile
            pass
    return count


def pod_agent(ctx, extra="", auth="token"):
    """Topology, fake API server, shop/web-0 in ns B, and an agent with trace auth
    `token` (TOKEN) or `kubernetes` (the fake API server's reviews)."""
    topo = ctx.topology()
    api = ctx.track(FakeApiServer(ctx.workdir).start())
    ctx.api = api
    pod = ctx.track(PodProcess(ctx.workdir, topo.ns_b))
    api.control("add", {"uid": pod.uid, "namespace": "shop", "name": "web-0", "node": "n1"})
    token_file = os.path.join(ctx.workdir, "trace-token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    if auth == "token":
        yaml_text = api.agent_yaml() + f"traces:\n  auth: token\n  token_file: {token_file}\n{extra}"
    else:
        yaml_text = api.agent_yaml() + f"traces:\n  auth: kubernetes\n{extra}"
    agent = ctx.track(Agent(ctx.binary, ctx.workdir, extra_yaml=yaml_text)).start().wait_ready()
    # Trace requests naming the pod need its netns found first.
    wait_until(lambda: (agent_lib.metric_value(agent, "pwru_kubernetes_pod_netns") or 0) >= 1, 30,
               "the agent to find shop/web-0's netns")
    return topo, api, pod, agent


def pod_icmp_trace(agent, pod, netns, what, seconds=3):
    """Traces pod shop/POD's ICMP for `seconds` through `agent`; checks every
    event is in `netns` and ICMP, and returns (events, summary)."""
    status, lines = post(agent, json.dumps({"namespace": "shop", "pod": pod, "filter": "icmp",
                                            "duration": f"{seconds}s"}))
    check(status == 200, f"POST /v1/traces for shop/{pod} ({what})", 200, (status, lines[:3]))
    events, summary = split_summary(lines, what)
    check(len(events) >= 4, f"events of shop/{pod}'s ICMP in {seconds} s ({what})", ">= 4 (a ping every 250 ms)",
          len(events))
    foreign = [e for e in events if e.get("netns") != netns]
    check(not foreign, f"events outside shop/{pod}'s netns {netns} ({what})", "none", foreign[:3])
    check(all(e["tuple"]["proto"] == 1 for e in events), f"protocol of the events ({what})",
          "ICMP only (filter icmp)", [e["tuple"] for e in events[:5]])
    # pwru's PROCESS is the executable path; a pod's tracer gets comm:pid only (softirq runs on whatever
    # task was current, maybe another tenant's).
    paths = [e["process"] for e in events if e["process"].startswith(("/", "~"))]
    check(not paths, f"PROCESS of the events ({what})", "comm:pid, never an executable path", paths[:5])
    # ...and only a task of the traced netns: ping runs in the client's netns, and its softirq handles the
    # pod's packets on ping's stack.
    foreign = []
    for e in events:
        pid = int(e["process"].rsplit(":", 1)[1])
        try:
            if pid and os.stat(f"/proc/{pid}/ns/net").st_ino != netns:
                foreign.append(e["process"])
        except OSError:  # exited since
            pass
    check(not foreign, f"PROCESS of the events ({what})", f"a task of netns {netns} or '-:0'", foreign[:5])
    return events, summary


class Traffic:
    """Bounded background commands (pings, UDP), stopped at teardown."""

    def __init__(self):
        self.procs = []

    def start(self, args):
        self.procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)


def scenario_pod_trace(ctx):
    """A trace for shop/web-0 sees ICMP in the pod's netns only, then the summary line."""
    topo, _, _, agent = pod_agent(ctx)
    traffic = ctx.track(Traffic())
    # ICMP A -> B (through the pod's netns) and A -> A (never in it), 10 s at most.
    traffic.start(topo.exec_args(topo.ns_a, "ping", "-q", "-c", "40", "-i", "0.25", topo.ip_b))
    traffic.start(topo.exec_args(topo.ns_a, "ping", "-q", "-c", "40", "-i", "0.25", topo.ip_a))
    events, summary = pod_icmp_trace(agent, "web-0", topo.inode_b, "pod trace")
    # pwru's JSON leaves zero values out (omitempty): cpu 0 has no "cpu".
    for field in ("skb", "process", "func", "netns", "iface", "len", "tuple"):
        check(field in events[0], f"pwru JSON field {field}", "present", events[0])
    check(summary["ended"] == "duration" and summary["events_sent"] == len(events) and summary["events_lost"] == 0,
          "summary", f"ended by duration, {len(events)} events sent, none lost", summary)
    check("shop/web-0" in summary["target"], "summary target", "names the pod", summary)
    return f"{len(events)} events, all in netns {topo.inode_b}; summary {summary['ended']}"


def scenario_concurrent(ctx):
    """Two traces at once with different scopes and filters each get only their own events."""
    topo, _, _, agent = pod_agent(ctx)
    traffic = ctx.track(Traffic())
    traffic.start(topo.exec_args(topo.ns_a, "ping", "-q", "-c", "40", "-i", "0.25", topo.ip_b))
    # UDP from B to a closed port in A: crosses both netns, dropped in A.
    traffic.start(["sh", "-c", f"for i in $(seq 40); do echo x | ip netns exec {topo.ns_b} nc -u -w0 {topo.ip_a} "
                               f"7777; sleep 0.25; done"])
    results = {}

    def run(name, body):
        try:
            results[name] = post(agent, json.dumps(body))
        except Exception as e:  # reported below, in the main thread
            results[name] = e

    threads = [threading.Thread(target=run, args=("pod_icmp", {"namespace": "shop", "pod": "web-0",
                                                               "filter": "icmp", "duration": "4s"})),
               threading.Thread(target=run, args=("netns_udp", {"netns": topo.inode_a, "filter": "udp port 7777",
                                                                "duration": "4s"}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=base.remaining(30))
    summaries = []
    for name, netns, proto in (("pod_icmp", topo.inode_b, 1), ("netns_udp", topo.inode_a, 17)):
        result = results.get(name)
        if not isinstance(result, tuple):
            raise Failure(f"trace {name}", "a streamed answer", repr(result))
        status, lines = result
        check(status == 200, f"trace {name}", 200, (status, lines[:2]))
        events, summary = split_summary(lines, name)
        check(len(events) >= 4, f"events of trace {name}", ">= 4", len(events))
        wrong = [e for e in events if e.get("netns") != netns or e["tuple"]["proto"] != proto]
        check(not wrong, f"events of trace {name} outside its netns {netns} / protocol {proto}", "none", wrong[:3])
        summaries.append(f"{name}: {len(events)}")
    return "; ".join(summaries)


def scenario_errors(ctx):
    """Every refusal is a JSON error with its status and a message that says what to fix; /metrics stays up."""
    _, _, _, agent = pod_agent(ctx, extra="  max_concurrent: 2\n  max_body_bytes: 1024\n")
    cases = [
        ("no token", "{}", None, 401, "Authorization: Bearer"),
        ("wrong token", "{}", "not-the-token", 403, "not this agent's trace token"),
        ("malformed JSON", '{"namespace": "shop",', TOKEN, 400, "not valid JSON"),
        ("unknown field", '{"pod_name": "web-0"}', TOKEN, 400, 'unknown field "pod_name"'),
        ("bad duration", '{"duration": "soon"}', TOKEN, 400, '"duration"'),
        ("duration over the cap", '{"duration": "2h"}', TOKEN, 400, "over this agent's cap"),
        ("bad pcap", '{"filter": "tcp port eighty"}', TOKEN, 400, '"filter": pcap filter'),
        ("no such pod", '{"namespace": "shop", "pod": "web-7"}', TOKEN, 404, "shop/web-7 is not on this node"),
        ("body too large", json.dumps({"filter": "icmp " + "or icmp " * 200}), TOKEN, 413, "over 1024 bytes"),
        ("functions without kprobes", '{"functions": "^ip_.*"}', TOKEN, 400, "no kprobe backend"),
    ]
    for what, body, token, status, message in cases:
        got, lines = post(agent, body, token=token)
        check(got == status, f"status for {what}", status, (got, lines))
        check(len(lines) == 1 and message in lines[0].get("error", ""), f"error for {what}",
              f'{{"error": "...{message}..."}}', lines)
        check(http_get(agent.url("/metrics"))[0] == 200, f"/metrics after {what}", 200, "not answering")

    # The concurrency cap: two traces held open, the third is refused.
    # Matching nothing: nobody reads these sockets, so events would fill them.
    holders = [open_trace(agent, {"filter": "host 192.0.2.1", "duration": "20s"}) for _ in range(2)]
    wait_until(lambda: len(list_traces(agent)) == 2, 20, "two running traces")
    got, lines = post(agent, '{"duration": "1s"}')
    check(got == 429 and "traces.max_concurrent" in lines[0].get("error", ""), "a third trace", "429 naming the cap",
          (got, lines))
    # Cancel one by id: its stream ends with a summary saying so.
    trace_id = list_traces(agent)[0]["id"]
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
    conn.request("DELETE", f"/v1/traces/{trace_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    res = conn.getresponse()
    check(res.status == 200, f"DELETE /v1/traces/{trace_id}", 200, (res.status, res.read()))
    conn.close()
    conn.request("DELETE", "/v1/traces/tr-nosuchtrace", headers={"Authorization": f"Bearer {TOKEN}"})
    res = conn.getresponse()
    check(res.status == 404, "DELETE of an unknown trace", 404, res.status)
    conn.close()
    wait_until(lambda: len(list_traces(agent)) == 1, 5, "the cancelled trace to end")
    for sock in holders:
        sock.close()
    wait_until(lambda: not list_traces(agent), 5, "the hung-up trace to end")
    counts = agent_lib.scrape_series(http_get(agent.url("/metrics"))[1], "pwru_trace_requests_total")
    codes = {dict(k)["code"]: v for k, v in counts.items()}
    check(codes.get("429") == 1 and codes.get("401") == 1 and codes.get("413") == 1,
          "pwru_trace_requests_total by code", "429, 401 and 413 counted once each", codes)
    return f"{len(cases)} refusals + 429 + cancel; /metrics answered after each"


def open_trace(agent, body):
    """A trace request on a raw socket, left open: the caller closes it to hang up."""
    sock = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
    payload = json.dumps(body).encode()
    sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: e2e\r\nAuthorization: Bearer " + TOKEN.encode() +
                 b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(payload)).encode() +
                 b"\r\n\r\n" + payload)
    return sock


def list_traces(agent):
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
    conn.request("GET", "/v1/traces", headers={"Authorization": f"Bearer {TOKEN}"})
    res = conn.getresponse()
    body = res.read()
    conn.close()
    check(res.status == 200, "GET /v1/traces", 200, (res.status, body))
    return json.loads(body)["traces"]


def scenario_disconnect(ctx):
    """A client that hangs up mid-trace: its links are gone from the kernel within a second."""
    _, _, _, agent = pod_agent(ctx)
    baseline = bpf_link_count(agent.proc.pid)
    sock = open_trace(agent, {"filter": "host 192.0.2.1", "duration": "60s"})  # quiet: no matching traffic
    wait_until(lambda: bpf_link_count(agent.proc.pid) >= baseline + 20, 20, "the trace's links to be attached")
    attached = bpf_link_count(agent.proc.pid) - baseline
    time.sleep(0.5)
    sock.close()
    closed_at = time.monotonic()
    wait_until(lambda: bpf_link_count(agent.proc.pid) == baseline, 10, "the trace's links to be detached")
    took = time.monotonic() - closed_at
    check(took <= LINKS_GONE_WITHIN, "links detached after the client hung up", f"within {LINKS_GONE_WITHIN}s",
          f"{took:.2f}s")
    check(not list_traces(agent), "running traces after the hang-up", "none", list_traces(agent))
    return f"{attached} links gone {took:.2f}s after the client closed"


def mutate(rng, base_body):
    """One fuzzed request body: byte-level or JSON-level damage to a valid one."""
    kind = rng.randrange(6)
    text = json.dumps(base_body)
    if kind == 0:  # flip, insert or delete bytes
        data = bytearray(text.encode())
        for _ in range(rng.randrange(1, 6)):
            op, pos = rng.randrange(3), rng.randrange(len(data) + 1)
            if op == 0 and pos < len(data):
                data[pos] = rng.randrange(256)
            elif op == 1:
                data.insert(pos, rng.randrange(256))
            elif pos < len(data):
                del data[pos]
        return bytes(data)
    if kind == 1:  # truncate
        return text.encode()[:rng.randrange(len(text))]
    body = dict(base_body)
    weird = [None, True, -1, 0, 2 ** 64, 1e308, "", "x" * rng.randrange(1, 3000), [], {}, {"a": [1, {"b": 2}]},
             "\u0000\ud7ff", "icmp and (", "1h", "10ms", "0.0001s", 4026531840, "ether host zz"]
    if kind == 2:  # a field gets a value of another type or range
        body[rng.choice(list(body) + ["duration", "max_events", "netns", "filter", "functions"])] = rng.choice(weird)
    elif kind == 3:  # unknown or duplicated keys
        return (text[:-1] + f', "{rng.choice(["pod", "x", "filter", ""])}": {json.dumps(rng.choice(weird))}}}').encode()
    elif kind == 4:  # deep nesting
        depth = rng.randrange(1, 2000)
        return ("[" * depth + "]" * depth).encode()
    else:  # random pcap-ish text
        words = ["tcp", "udp", "icmp", "port", "and", "or", "not", "(", ")", "host", "1.2.3.4", "80", "[", "]", "&"]
        body["filter"] = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 12)))
    return json.dumps(body).encode()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scenario_fuzz(ctx):
    """10k mutated requests: no crash, every answer well-formed, no leaked links, memory flat."""
    _, _, _, agent = pod_agent(ctx, extra="  max_concurrent: 2\n  default_duration_seconds: 1\n"
                                          "  max_duration_seconds: 2\n")
    baseline = bpf_link_count(agent.proc.pid)
    rng = random.Random(int(os.environ.get("PWRU_FUZZ_SEED", "1234")))
    # Names a pod that does not exist: valid mutations are answered after the
    # whole body was parsed, without loading programs for each of them.
    by_pod = {"namespace": "shop", "pod": "web-9", "filter": "tcp port 80", "duration": "100ms"}
    # One in ten names a netns instead: its valid mutations load real
    # programs (and pcap filters get compiled), which takes most of a second.
    by_netns = {"netns": 4026531840, "filter": "host 192.0.2.1", "duration": "100ms", "max_events": 3}
    statuses = {}
    rss_after_warmup = None
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
    start = time.monotonic()
    for i in range(FUZZ_REQUESTS):
        if time.monotonic() - start > base.remaining(FUZZ_SECONDS):
            raise Failure("fuzz run", f"{FUZZ_REQUESTS} requests within {FUZZ_SECONDS}s", f"{i} done")
        body = mutate(rng, by_netns if rng.random() < 0.1 else by_pod)
        try:
            conn.request("POST", "/v1/traces", body=body,
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            res = conn.getresponse()
            text = res.read()
        except (ConnectionError, http.client.HTTPException, socket.timeout) as e:
            check(agent.proc.poll() is None, "agent during the fuzz run", "alive",
                  f"exited {agent.proc.returncode} at request {i} ({body[:200]!r}): {e}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
            statuses["reconnect"] = statuses.get("reconnect", 0) + 1
            continue
        statuses[res.status] = statuses.get(res.status, 0) + 1
        check(res.status in (200, 400, 404, 413, 429), f"status of fuzz request {i} ({body[:200]!r})",
              "200, 400, 404, 413 or 429", (res.status, text[:300]))
        if res.status != 200:
            obj = json.loads(text)
            check(isinstance(obj.get("error"), str) and obj["error"], f"error body of fuzz request {i}",
                  '{"error": "<message>"}', text[:300])
        if i == 1000:
            rss_after_warmup = rss_kib(agent.proc.pid)
    conn.close()
    # A trace's answer ends before its links are detached and its memory freed (RunningTrace): measured once
    # every trace is gone, not while the last one still holds its ring and programs.
    wait_until(lambda: not list_traces(agent), 10, "every fuzz trace to end")
    rss_end = rss_kib(agent.proc.pid)
    check(bpf_link_count(agent.proc.pid) == baseline, "BPF links after the fuzz run", baseline, bpf_link_count(agent.proc.pid))
    check(rss_end - rss_after_warmup < 8 * 1024, "agent RSS growth from request 1000 to the end",
          "< 8 MiB", f"{rss_after_warmup} KiB -> {rss_end} KiB")
    check(http_get(agent.url("/metrics"))[0] == 200, "/metrics after the fuzz run", 200, "not answering")
    took = time.monotonic() - start
    return (f"{FUZZ_REQUESTS} requests in {took:.0f}s, statuses {dict(sorted(statuses.items(), key=str))}, "
            f"RSS {rss_after_warmup} -> {rss_end} KiB, links back to {baseline}")


def scenario_kube_auth(ctx):
    """traces.auth kubernetes: TokenReview says who, SubjectAccessReview says what they may trace."""
    _, api, _, agent = pod_agent(ctx, auth="kubernetes")
    for token, user in (("alice-token", "alice"), ("bob-token", "bob"), ("ops-token", "ops")):
        api.control("user", {"token": token, "username": user, "groups": ["system:authenticated"]})
    api.control("allow", {"username": "alice", "verb": "create", "resource": "pods", "subresource": "trace",
                          "namespace": "shop", "name": "web-0"})
    api.control("allow", {"username": "ops", "verb": "*", "resource": "nodes", "subresource": "trace", "name": "n1"})
    pod_body = json.dumps({"namespace": "shop", "pod": "web-0", "filter": "icmp", "duration": "1s"})
    node_body = json.dumps({"filter": "host 192.0.2.1", "duration": "1s"})
    cases = [
        ("no token", pod_body, None, 401, "Authorization: Bearer"),
        ("a token the API server does not know", pod_body, "mallory-token", 401, "did not accept the bearer token"),
        ("bob, with no rule", pod_body, "bob-token", 403,
         "bob may not create pods/trace in namespace shop (pod web-0)"),
        ("alice, for the whole node", node_body, "alice-token", 403, "alice may not create nodes/trace (node n1)"),
    ]
    for what, body, token, status, message in cases:
        got, lines = post(agent, body, token=token)
        check(got == status and message in lines[0].get("error", ""), f"trace request by {what}",
              f"{status} with '{message}'", (got, lines))
    for what, body, token in (("alice, her pod", pod_body, "alice-token"), ("ops, the node", node_body, "ops-token")):
        got, lines = post(agent, body, token=token)
        check(got == 200, f"trace request by {what}", 200, (got, lines[:2]))
        split_summary(lines, what)
    # Listing running traces is a node-level right.
    for token, status in (("alice-token", 403), ("ops-token", 200)):
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
        conn.request("GET", "/v1/traces", headers={"Authorization": f"Bearer {token}"})
        res = conn.getresponse()
        res.read()
        conn.close()
        check(res.status == status, f"GET /v1/traces with {token}", status, res.status)
    # The API server goes away: a token it has not vouched for yet cannot be checked.
    api.control("user", {"token": "carol-token", "username": "carol"})
    api.kill()
    got, lines = post(agent, pod_body, token="carol-token")
    check(got == 503 and "cannot check the caller's token" in lines[0].get("error", ""),
          "a trace request while the API server is down", "503 saying the token cannot be checked", (got, lines))
    check(http_get(agent.url("/metrics"))[0] == 200, "/metrics with the API server down", 200, "not answering")
    return "401 x2, 403 x2, 200 for alice's pod and ops' node, 503 with the API server down"


PEER_NAME = "pwru-agent-peer"
AGENT_LABELS = {"app.kubernetes.io/name": "pwru-agent"}
AGENT_OWNER = {"kind": "DaemonSet", "name": "pwru-agent"}


class PeerCerts:
    """A CA and certificates for the agents' mutual TLS (traces.peer_tls),
    made as the chart makes them: certificates signed by the CA, carrying the
    peer name as a DNS subjectAltName, good as server and as client."""

    def __init__(self, workdir, label="peer-ca"):
        self.dir = os.path.join(workdir, label)
        os.makedirs(self.dir)
        self.ca = os.path.join(self.dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "ca.key")
        sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "1", "-subj", f"/CN=pwru-e2e-{label}", "-keyout", self.ca_key, "-out", self.ca])

    def issue(self, label, dns=PEER_NAME):
        """(cert, key) files of a certificate named DNS:`dns` signed by this CA."""
        d = os.path.join(self.dir, label)
        os.makedirs(d)
        sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
            f"/CN={label}", "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.csr"])
        with open(f"{d}/ext", "w") as f:
            f.write(f"subjectAltName=DNS:{dns}\nextendedKeyUsage=serverAuth,clientAuth\n")
        sh(["openssl", "x509", "-req", "-in", f"{d}/tls.csr", "-CA", self.ca, "-CAkey", self.ca_key,
            "-CAcreateserial", "-days", "1", "-extfile", f"{d}/ext", "-out", f"{d}/tls.crt"])
        return f"{d}/tls.crt", f"{d}/tls.key"

    def traces_yaml(self, label):
        """traces: keys (indented under traces:) giving an agent a certificate of its own and a peer port."""
        cert, key = self.issue(label)
        return (f"  peer_port: {agent_lib.free_port()}\n  peer_tls:\n    ca_file: {self.ca}\n"
                f"    cert_file: {cert}\n    key_file: {key}\n")


def peer_port_of(agent):
    """The peer port written into an agent's configuration."""
    with open(agent.config) as f:
        return int(next(line.split(":")[1] for line in f if line.strip().startswith("peer_port:")))


def register_agent_pod(api, node, agent, owner=AGENT_OWNER, name=None, peer_port=None, ready=True):
    """The agent pod of `node` in namespace pwru, as the DaemonSet's pods look to the API server
    (`agent` None: a pod whose peer port is `peer_port`)."""
    api.control("add", {"uid": f"agent-{node}-{name or 'pod'}", "namespace": "pwru",
                        "name": name or f"pwru-agent-{node}", "node": node, "labels": AGENT_LABELS,
                        "podIP": "127.0.0.1", "owner": owner, "ready": ready,
                        "ports": {"http": agent.port if agent else 1,
                                  "peer": peer_port or peer_port_of(agent)}})


class RecordingPeer:
    """An HTTPS server standing in for another node's agent: mutual TLS with
    `ca` (a client certificate required), every TCP connection counted and
    every request's head and body recorded as received, each answered with
    a short NDJSON trace. Runs in a thread of the test."""

    def __init__(self, cert, key, ca):
        import http.server
        import ssl
        peer = self
        self.connections = 0
        self.requests = []  # {"head": bytes, "body": bytes, "client_cert": dict}
        self.lock = threading.Lock()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with peer.lock:
                    peer.requests.append({"head": self.raw_requestline + bytes(self.headers), "body": body,
                                          "headers": dict(self.headers.items()),
                                          "client_cert": self.connection.getpeercert()})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in ({"func": "recording_peer", "netns": 1},
                             {"summary": {"ended": "duration", "target": "the recording peer"}}):
                    data = (json.dumps(line) + "\n").encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.write(b"0\r\n\r\n")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                with peer.lock:
                    peer.connections += 1
                # The handshake runs in the request's thread, on its first read.
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass  # refused handshakes are what some scenarios expect

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kill(self):
        self.server.shutdown()
        self.server.server_close()


def peer_port_request(port, body, headers, ca, cert=None, key=None, server_name=PEER_NAME, timeout=20.0):
    """A POST /v1/traces to an agent's peer port as another agent would send it
    (with `cert`) or as a stranger would (without): (status, [JSON lines]), or
    (None, "why") when the TLS connection was refused."""
    import ssl
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    payload = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_name) as sock:
                sock.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\n"
                             f"{head}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                             + payload)
                data = b""
                while True:
                    got = sock.recv(65536)
                    if not got:
                        break
                    data += got
    except (ssl.SSLError, ConnectionError) as e:
        return None, f"{type(e).__name__}: {e}"
    if not data:
        return None, "connection closed without an answer"
    head_text, _, rest = data.partition(b"\r\n\r\n")
    status = int(head_text.split()[1])
    if b"chunked" in head_text.lower():
        body_bytes = b""
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            if size == 0:
                break
            body_bytes, rest = body_bytes + rest[:size], rest[size + 2:]
    else:
        body_bytes = rest
    return status, [json.loads(line) for line in body_bytes.decode().splitlines() if line.strip()]


def scenario_forward(ctx):
    """A request to one node's agent for a pod on another node is relayed to the agent there, over mutual TLS."""
    certs = PeerCerts(ctx.workdir)
    topo, api, _, agent_n1 = pod_agent(ctx, extra="  peer_namespace: pwru\n" + certs.traces_yaml("n1"))
    db = ctx.track(PodProcess(ctx.workdir, topo.ns_a))
    api.control("add", {"uid": db.uid, "namespace": "shop", "name": "db-0", "node": "n2"})
    api.control("add", {"uid": "lonely-uid", "namespace": "shop", "name": "lonely", "node": "n3"})
    n2_dir = os.path.join(ctx.workdir, "n2")
    os.makedirs(n2_dir)
    token_file = os.path.join(ctx.workdir, "trace-token")
    agent_n2 = ctx.track(Agent(ctx.binary, n2_dir, extra_yaml=api.agent_yaml(node="n2") +
                               f"traces:\n  auth: token\n  token_file: {token_file}\n  peer_namespace: pwru\n" +
                               certs.traces_yaml("n2")))
    agent_n2.start().wait_ready()
    for node, agent in (("n1", agent_n1), ("n2", agent_n2)):
        register_agent_pod(api, node, agent)
    wait_until(lambda: (agent_lib.metric_value(agent_n2, "pwru_kubernetes_pod_netns") or 0) >= 1, 30,
               "the n2 agent to find shop/db-0's netns")

    traffic = ctx.track(Traffic())
    traffic.start(topo.exec_args(topo.ns_b, "ping", "-q", "-c", "40", "-i", "0.25", topo.ip_a))
    # Asked of the n1 agent; db-0 runs on n2.
    events, summary = pod_icmp_trace(agent_n1, "db-0", topo.inode_a, "relayed from n2")
    check("shop/db-0" in summary.get("target", "") and summary.get("ended") == "duration",
          "summary of the relayed trace", "the n2 agent's, ended by duration", summary)
    check("relayed to the agent on node n2" in agent_n1.stderr() and "over TLS" in agent_n1.stderr(),
          "n1 agent log", "the relay, over TLS", "no such line")

    cases = [
        ({"namespace": "shop", "pod": "nope"}, 404, "no pod shop/nope in the cluster"),
        ({"namespace": "shop", "pod": "lonely"}, 502, "runs on node n3, where no pwru-agent"),
        ({"namespace": "shop", "pod": "db-0", "filter": "tcp port eighty"}, 400,
         "the pwru-agent on node n2 answered: \"filter\""),
    ]
    for body, want, message in cases:
        got, lines = post(agent_n1, json.dumps(body))
        check(got == want and message in lines[0].get("error", ""), f"n1 agent asked for {body}",
              f"{want} with '{message}'", (got, lines))

    # Hanging up on the relaying agent ends the trace on the other node too.
    baseline = bpf_link_count(agent_n2.proc.pid)
    sock = open_trace(agent_n1, {"namespace": "shop", "pod": "db-0", "filter": "host 192.0.2.1", "duration": "60s"})
    wait_until(lambda: bpf_link_count(agent_n2.proc.pid) >= baseline + 20, 20, "the n2 agent to attach the trace")
    sock.close()
    closed_at = time.monotonic()
    wait_until(lambda: bpf_link_count(agent_n2.proc.pid) == baseline, 10, "the n2 agent to detach")
    took = time.monotonic() - closed_at
    check(took <= 2 * LINKS_GONE_WITHIN, "n2 links detached after the client hung up on n1",
          f"within {2 * LINKS_GONE_WITHIN}s (two hops)", f"{took:.2f}s")
    # The n2 agent dies mid-trace: the caller still gets a last line saying so.
    baseline = bpf_link_count(agent_n2.proc.pid)
    sock = open_trace(agent_n1, {"namespace": "shop", "pod": "db-0", "filter": "host 192.0.2.1", "duration": "60s"})
    wait_until(lambda: bpf_link_count(agent_n2.proc.pid) >= baseline + 20, 20, "the n2 agent to attach the trace")
    agent_n2.kill()
    killed_at = time.monotonic()
    sock.settimeout(base.remaining(20))
    answer = b""
    try:
        while not answer.endswith(b"\r\n0\r\n\r\n"):
            got = sock.recv(65536)
            if not got:
                break
            answer += got
    except socket.timeout:
        pass
    finally:
        sock.close()
    ended_after = time.monotonic() - killed_at
    lines = [json.loads(line) for line in answer.decode(errors="replace").splitlines() if line.startswith("{")]
    check(lines and lines[-1].get("summary", {}).get("ended") == "the pwru-agent on node n2 stopped answering",
          "the relayed trace's last line after the n2 agent died", "a summary saying n2 stopped answering",
          answer.decode(errors="replace")[-500:])
    return (f"{len(events)} events relayed from n2 over mutual TLS; 404/502/400 relayed; n2 detached {took:.2f}s "
            f"after hang-up; 'stopped answering' {ended_after:.2f}s after n2 died")


def scenario_track_skb(ctx):
    """"track_skb": the pod's datagram is still reported after DNAT changed the port the filter matched."""
    topo, _, _, agent = pod_agent(ctx)
    sh(topo.exec_args(topo.ns_b, "nft", "-f", "-"), input_bytes=(
        "table ip pwru_track {\n chain pre {\n  type nat hook prerouting priority -100; policy accept;\n"
        "  udp dport 7777 dnat to :8888\n }\n}\n").encode())
    traffic = ctx.track(Traffic())
    traffic.start(["sh", "-c", f"for i in $(seq 40); do echo x | ip netns exec {topo.ns_a} nc -u -w0 {topo.ip_b} "
                               f"7777; sleep 0.25; done"])
    found = {}
    for track in (False, True):
        status, lines = post(agent, json.dumps({"namespace": "shop", "pod": "web-0", "filter": "udp dst port 7777",
                                                "track_skb": track, "summary": track, "duration": "2s"}))
        check(status == 200, f"trace with track_skb {track}", 200, (status, lines[:2]))
        events, summary = split_summary(lines, f"track_skb {track}")
        found[track] = [e for e in events if e["tuple"].get("dport") == 8888]
        check(events, f"events with track_skb {track}", "the datagrams before DNAT", events)
    check(not found[False], "events after DNAT without track_skb", "none (the filter no longer matches)",
          found[False][:2])
    check(any("NO_SOCKET" in e["func"] for e in found[True]), "events after DNAT with track_skb",
          "the NO_SOCKET drop at port 8888", [(e["func"], e["tuple"]) for e in found[True]][:5])
    # "summary": true: each datagram's journey, from port 7777 to the drop after DNAT, in the summary line.
    journeys = summary.get("journeys", [])
    dropped = [j for j in journeys if j["fate"] == "dropped" and j["tuple"].get("dport") == 7777
               and j["reason"].endswith("NO_SOCKET") and j["hint"].startswith("nothing listens")]
    check(dropped and "udp" in dropped[0]["where"] and dropped[0]["hooks"][-1]["func"].endswith("(SKB_DROP_REASON_NO_SOCKET)"),
          "journeys in the summary line with \"summary\": true",
          "datagrams first seen at port 7777, dropped with NO_SOCKET and its hint",
          [(j["tuple"], j["fate"], j["where"]) for j in journeys][:5])
    return (f"{len(found[True])} events after DNAT with track_skb, none without; {len(dropped)} of "
            f"{len(journeys)} journeys dropped with NO_SOCKET after DNAT")


def attached_links(agent, body, what):
    """Links a quiet trace of `body` holds once attached (the socket is then closed and the links gone)."""
    baseline = bpf_link_count(agent.proc.pid)
    sock = open_trace(agent, body)
    try:
        wait_until(lambda: bpf_link_count(agent.proc.pid) >= baseline + 20, 20, f"{what}: its links to be attached")
        # Attaching goes hook by hook: counted once the number stands still.
        last = -1
        for _ in range(20):
            now = bpf_link_count(agent.proc.pid)
            if now == last:
                break
            last = now
            time.sleep(0.25)
        attached = last - baseline
    finally:
        sock.close()
    wait_until(lambda: bpf_link_count(agent.proc.pid) == baseline, 10, f"{what}: its links to be detached")
    return attached


def scenario_pod_set(ctx):
    """"pods": two pods of one agent in one trace: events of both netns, each labelled with its pod and
    node, one trace listed, one trace's worth of links."""
    # A peer namespace gives the agent its peer locator, and so its node's name (kubernetes.node_name).
    topo, api, _, agent = pod_agent(ctx, extra="  peer_namespace: pwru\n")
    web1 = ctx.track(PodProcess(ctx.workdir, topo.ns_a))
    api.control("add", {"uid": web1.uid, "namespace": "shop", "name": "web-1", "node": "n1"})
    wait_until(lambda: (agent_lib.metric_value(agent, "pwru_kubernetes_pod_netns") or 0) >= 2, 30,
               "the agent to find shop/web-1's netns")
    pods = {"namespace": "shop", "pods": ["web-0", "web-1", "web-9"]}
    single = attached_links(agent, {"namespace": "shop", "pod": "web-0", "filter": "host 192.0.2.1",
                                    "duration": "60s"}, "a trace of shop/web-0")
    both = attached_links(agent, dict(pods, filter="host 192.0.2.1", duration="60s"), "a trace of two pods")
    check(both == single, "BPF links of one trace of two pods", f"one trace's worth ({single}, as for one pod)", both)

    traffic = ctx.track(Traffic())
    traffic.start(topo.exec_args(topo.ns_a, "ping", "-q", "-c", "40", "-i", "0.25", topo.ip_b))
    listed = []
    result = {}

    def run():
        result["answer"] = post(agent, json.dumps(dict(pods, filter="icmp", duration="3s")))

    poster = threading.Thread(target=run)
    poster.start()
    try:
        wait_until(lambda: listed.extend(list_traces(agent)) or listed, 10, "the pods trace to be listed")
    finally:
        poster.join(timeout=30)
    check(len(listed) == 1 and "web-0" in listed[0]["target"] and "web-1" in listed[0]["target"],
          "GET /v1/traces during a trace of two pods", "one trace naming both", listed)
    status, lines = result.get("answer", (None, []))
    check(status == 200, "POST /v1/traces with \"pods\"", 200, (status, lines[:3]))
    events, summary = split_summary(lines, "pods trace")
    by_pod = {}
    for e in events:
        by_pod.setdefault((e.get("pod"), e.get("netns")), 0)
        by_pod[(e.get("pod"), e.get("netns"))] += 1
    check(("web-0", topo.inode_b) in by_pod and ("web-1", topo.inode_a) in by_pod,
          "events of a trace of two pods", f"web-0's in netns {topo.inode_b} and web-1's in netns {topo.inode_a}",
          by_pod)
    wrong = [e for e in events if (e.get("pod"), e.get("netns")) not in
             {("web-0", topo.inode_b), ("web-1", topo.inode_a)} or e.get("node") != "n1"
             or e.get("namespace") != "shop"]
    check(not wrong, "labels of the events", "node n1, namespace shop, the pod of the event's netns", wrong[:3])
    first = json.dumps(events[0], separators=(",", ":"))
    check(list(events[0])[:4] == ["skb", "node", "namespace", "pod"], "key order of an event",
          "skb, node, namespace, pod first", first[:120])
    check(summary.get("node") == "n1" and summary.get("pods") == {
        "shop/web-0": "traced", "shop/web-1": "traced", "shop/web-9": "not on node n1"},
          "summary of a trace of two pods", "node n1; both traced, web-9 not on node n1", summary)
    return (f"{len(events)} events ({', '.join(f'{p}: {n}' for (p, _), n in sorted(by_pod.items()))}); "
            f"{both} links, as one pod's trace")


class Context(agent_lib.Context):
    def __init__(self, binary, workdir):
        super().__init__(binary, workdir)
        self.api = None


def preflight(binary):
    return base.missing_prerequisites(binary, agent_lib.TOOLS + ("ping",),
                                      "iproute2, netcat-openbsd, nftables, prometheus, openssl, iputils-ping")


def main(argv):
    scenarios = {name: globals()[f"scenario_{name}"] for name in SCENARIOS}
    return base.scenario_main(argv, scenarios, preflight, Context, agent_lib.show_agent_failure,
                              agent_lib.teardown_agent, deadline=300.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
