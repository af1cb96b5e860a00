#!/usr/bin/env python3
"""The trace API attacked: each scenario plays a tenant (or a stranger on the
network) trying to see another pod's packets, steal a credential, or take the
agent's probes and scrapes down, against a running pwru-agent.

Usage (as root):  abuse_e2e.py /path/to/bin/pwru-agent SCENARIO

Traffic stays on loopback and inside network namespaces the test creates;
every load loop is bounded in count and time. Missing root or tools is a
failure, not a skip. Exit status: 0 pass, 1 fail.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import agent_e2e as agent_lib
import pwru_e2e as base
import trace_e2e
from pwru_e2e import Failure, check, sh, wait_until

# Each scenario is registered here and in e2e/CMakeLists.txt.
SCENARIOS = {}


def scenario(function):
    SCENARIOS[function.__name__.removeprefix("scenario_")] = function
    return function


# --- scenarios ---


class ScratchNetns:
    """Network namespaces made and deleted by a scenario (teardown deletes what is left)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.count = 0
        self.live = set()

    def add(self):
        self.count += 1
        name = f"{self.prefix}-{self.count}"
        sh(["ip", "netns", "add", name])
        sh(["ip", "-n", name, "link", "set", "lo", "up"])
        self.live.add(name)
        return name, os.stat(f"/var/run/netns/{name}").st_ino

    def delete(self, name):
        sh(["ip", "netns", "del", name])
        self.live.discard(name)

    def kill(self):
        for name in list(self.live):
            subprocess.run(["ip", "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.live.clear()


def inode_reused(netns, inode, within):
    """Creates and deletes netns for up to `within` seconds until one gets `inode`; whether one did."""
    end = time.monotonic() + base.remaining(within)
    while time.monotonic() < end:
        name, got = netns.add()
        netns.delete(name)
        if got == inode:
            return True
        time.sleep(0.2)
    return False


class BackgroundTrace:
    """POST /v1/traces read to its end on a thread: (status, lines) and when the stream ended."""

    def __init__(self, agent, body, token=trace_e2e.TOKEN):
        self.result = None
        self.ended_at = None
        self.thread = threading.Thread(target=self._run, args=(agent, body, token), daemon=True)
        self.thread.start()

    def _run(self, agent, body, token):
        try:
            self.result = trace_e2e.post(agent, json.dumps(body), token=token, timeout=120)
        except Exception as e:  # reported by wait()
            self.result = e
        self.ended_at = time.monotonic()

    def wait(self, timeout, what):
        self.thread.join(timeout=base.remaining(timeout))
        if self.thread.is_alive():
            raise Failure(what, f"the trace's stream to end within {timeout}s", "still streaming")
        if not isinstance(self.result, tuple):
            raise Failure(what, "a streamed answer", repr(self.result))
        return self.result


@scenario
def scenario_inode_reuse(ctx):
    """A pod's trace holds its netns: a netns made after the pod's is deleted never takes over its inode number
    (so none of its packets reach the trace), and the trace ends with "pod gone" when the pod leaves the watch."""
    _, api, _, agent = trace_e2e.pod_agent(ctx)
    netns = ctx.track(ScratchNetns(f"pwab-{os.getpid()}"))
    # The attack needs the kernel to hand a freed netns's inode to the next one: show it does, here and now.
    name, inode = netns.add()
    netns.delete(name)
    check(inode_reused(netns, inode, 5), "a new netns after one was deleted", f"the deleted one's inode {inode}",
          "never reused within 5 s: this kernel does not show the attack")

    victim_ns, victim_inode = netns.add()
    victim = ctx.track(agent_lib.PodProcess(ctx.workdir, victim_ns))
    api.control("add", {"uid": victim.uid, "namespace": "shop", "name": "old-0", "node": "n1"})
    wait_until(lambda: (agent_lib.metric_value(agent, "pwru_kubernetes_pod_netns") or 0) >= 2, 30,
               "the agent to find shop/old-0's netns")
    links_before = trace_e2e.bpf_link_count(agent.proc.pid)
    trace = BackgroundTrace(agent, {"namespace": "shop", "pod": "old-0", "filter": "icmp", "duration": "40s"})
    wait_until(lambda: trace_e2e.bpf_link_count(agent.proc.pid) >= links_before + 20, 20,
               "the trace of shop/old-0 to be attached")
    sh(["ip", "netns", "exec", victim_ns, "ping", "-q", "-c", "4", "-i", "0.2", "127.0.0.1"], ok=(0, 1))
    check(netns_fds(agent.proc.pid, victim_inode), f"the agent's fds while tracing shop/old-0",
          f"one holding netns {victim_inode}", "none")

    # The pod dies: its process is gone and its netns deleted; the API server has not told the agent yet.
    victim.kill()
    netns.delete(victim_ns)
    time.sleep(1.0)  # the kernel frees a netns from a workqueue; above, reuse came within this
    newcomers = []
    for _ in range(5):
        name, inode = netns.add()
        newcomers.append((name, inode))
        sh(["ip", "netns", "exec", name, "ping", "-q", "-c", "3", "-i", "0.2", "127.0.0.1"], ok=(0, 1))
    check(all(inode != victim_inode for _, inode in newcomers), "inodes of netns made while the trace runs",
          f"never the traced pod's {victim_inode} (held by the trace)", [i for _, i in newcomers])

    deleted_at = time.monotonic()
    api.control("delete", {"uid": victim.uid})
    status, lines = trace.wait(10, "the trace of a deleted pod")
    took = trace.ended_at - deleted_at
    check(status == 200, "the trace of shop/old-0", 200, (status, lines[:2]))
    events, summary = trace_e2e.split_summary(lines, "trace of shop/old-0")
    check(summary.get("ended") == "pod gone", "how the trace ended", '"ended": "pod gone"', summary)
    check(took <= 2.0, "the trace's end after the pod left the watch", "within 2 s", f"{took:.2f}s")
    check(events, "events of shop/old-0 before it died", "its pings", "none")
    foreign = [e for e in events if e.get("netns") != victim_inode]
    check(not foreign, "events from other netns", "none", foreign[:3])
    wait_until(lambda: trace_e2e.bpf_link_count(agent.proc.pid) == links_before, 5, "the trace's links to go")
    # Released with the trace, so the dead netns can go. (Whether the kernel
    # then hands out its number again depends on lower numbers freed
    # meanwhile: the IDA gives the lowest free one.)
    wait_until(lambda: not netns_fds(agent.proc.pid, victim_inode), 5,
               f"the agent to close its fd of netns {victim_inode} after the trace")
    return (f"{len(events)} events, all in netns {victim_inode}; 5 netns made after the pod died got other inodes; "
            f"ended \"pod gone\" {took:.2f}s after the API delete; the netns fd closed with the trace")


def netns_fds(pid, inode):
    """The fds of process `pid` that hold netns `inode` open."""
    held = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == f"net:[{inode}]":
                held.append(fd)
        except OSError:  # closed while listed
            pass
    return held


KERNEL_ADDRESS = re.compile(r"0x(ffff|ffffffff)[0-9a-f]{8,12}\b")


@scenario
def scenario_kernel_addresses(ctx):
    """A pod's trace never carries a kernel address: skb is a pseudonym stable within the trace (one packet, one
    name across hooks) and unrelated between traces; stacks and journeys carry names, never addresses."""
    topo, _, _, agent = trace_e2e.pod_agent(ctx)
    traffic = ctx.track(trace_e2e.Traffic())
    traffic.start(topo.exec_args(topo.ns_a, "ping", "-q", "-c", "40", "-i", "0.25", topo.ip_b))
    body = {"namespace": "shop", "pod": "web-0", "filter": "icmp", "duration": "3s", "stack": True, "caller": True,
            "summary": True}
    runs = [BackgroundTrace(agent, body), BackgroundTrace(agent, body)]
    names = []
    for i, run in enumerate(runs):
        status, lines = run.wait(30, f"trace {i}")
        check(status == 200, f"trace {i}", 200, (status, lines[:2]))
        text = "\n".join(json.dumps(line) for line in lines)
        leaked = KERNEL_ADDRESS.findall(text)
        check(not leaked, f"kernel addresses in trace {i}'s answer", "none", leaked[:5])
        events, summary = trace_e2e.split_summary(lines, f"trace {i}")
        check(len(events) >= 8, f"events of trace {i}", ">= 8", len(events))
        skbs = [e["skb"] for e in events]
        check(len(set(skbs)) < len(skbs), f"skb names in trace {i}", "one packet keeps its name across hooks",
              f"{len(set(skbs))} names for {len(skbs)} events")
        check(all(re.fullmatch(r"0x[0-9a-f]{1,16}", skb) for skb in skbs), f"skb field format in trace {i}",
              "a hex number as pwru prints it", skbs[:3])
        journeys = summary.get("journeys", [])
        check(journeys and {j["skb"] for j in journeys} <= set(skbs), f"journeys of trace {i}",
              "named with the events' skb names", [j.get("skb") for j in journeys[:3]])
        names.append(set(skbs))
    common = names[0] & names[1]
    check(not common, "skb names shared by two traces of the same packets", "none (a key per trace)",
          sorted(common)[:3])
    return f"{len(names[0])} and {len(names[1])} skb names, none shared, no kernel address in either answer"


UDP_FLOOD = r"""
import socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", port))
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + seconds
sent = 0
while sent < count and time.monotonic() < end:
    tx.sendto(b"x" * 32, ("127.0.0.1", port))
    sent += 1
    try:
        while True:
            rx.recv(64)
    except BlockingIOError:
        pass
"""

FLOOD_DATAGRAMS = 20000
FLOOD_SECONDS = 6.0


def udp_flood(prefix_args, port):
    """Bounded loopback UDP, received (so each datagram is consumed, not dropped), in the netns of `prefix_args`."""
    return subprocess.Popen(prefix_args + ["python3", "-c", UDP_FLOOD, str(port), str(FLOOD_DATAGRAMS),
                                           str(FLOOD_SECONDS)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def flood_everywhere(topo):
    """The pod's own UDP on port 9999 (what its trace tracks) beside unrelated UDP on 9998 in the host and in the
    other test netns: skbs the tracepoints never see freed get their addresses reused by strangers' skbs."""
    floods = [udp_flood(topo.exec_args(topo.ns_b), 9999), udp_flood([], 9998),
              udp_flood(topo.exec_args(topo.ns_a), 9998)]
    for p in floods:
        p.wait(timeout=base.remaining(FLOOD_SECONDS + 10))


def pwru_track_skb_round(ctx, pwru, topo, attempt):
    """One flood traced by `pwru --filter-netns B --filter-track-skb`: (events, how many outside netns B)."""
    out_path = os.path.join(ctx.workdir, f"pwru-track-{attempt}.json")
    ready = os.path.join(ctx.workdir, f"pwru-ready-{attempt}")
    with open(out_path, "wb") as out:
        cli = subprocess.Popen([pwru, "--ready-file", ready, "--output-json", "--filter-netns", topo.path_b,
                                "--filter-track-skb", "udp port 9999"], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(ready), 60, "pwru to attach")
        flood_everywhere(topo)
    finally:
        cli.terminate()
        cli.wait(timeout=30)
    events = []
    with open(out_path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events, sum(1 for e in events if e.get("netns") != topo.inode_b)


@scenario
def scenario_track_skb_confined(ctx):
    """"track_skb" in a pod's trace reports only the pod's netns, under unrelated host and netns traffic; pwru's
    own --filter-track-skb semantics (tracked skbs leave the netns filter) show the leak the agent closes."""
    topo, _, _, agent = trace_e2e.pod_agent(ctx)
    pwru = os.path.join(os.path.dirname(ctx.binary), "pwru")
    check(os.access(pwru, os.X_OK), "pwru beside pwru-agent", pwru, "missing")

    # The control: the CLI, as cilium/pwru behaves, scoped to the same netns with tracking. Whether a stranger's
    # skb lands on a tracked address depends on the allocator's timing: up to 3 rounds until it does.
    for attempt in range(1, 4):
        cli_events, cli_foreign = pwru_track_skb_round(ctx, pwru, topo, attempt)
        if cli_foreign:
            break
    check(cli_foreign > 0, "pwru --filter-netns --filter-track-skb under the same traffic, 3 rounds",
          "events outside the netns (the leak this scenario guards against)", f"none of {len(cli_events)}")

    trace = BackgroundTrace(agent, {"namespace": "shop", "pod": "web-0", "filter": "udp port 9999",
                                    "track_skb": True, "duration": "12s", "max_events": 1000000})
    wait_until(lambda: trace_e2e.list_traces(agent), 20, "the trace to start")
    time.sleep(2.0)  # attached: the trace lists itself while still attaching
    flood_everywhere(topo)
    status, lines = trace.wait(30, "the track_skb trace")
    check(status == 200, "the track_skb trace", 200, (status, lines[:2]))
    events, summary = trace_e2e.split_summary(lines, "track_skb trace")
    foreign = [e for e in events if e.get("netns") != topo.inode_b]
    check(len(events) >= 100, "the pod's own tracked UDP", ">= 100 events", len(events))
    check(not foreign, "events outside the pod's netns with track_skb", "none",
          f"{len(foreign)}, e.g. {foreign[:2]}")
    # The ring may overflow under this flood; what matters is that losses are counted, never hidden.
    check(isinstance(summary.get("events_lost"), int), "events_lost in the summary", "a count", summary)
    # The same under a netns set (BPF map filter): nothing from a netns outside the set.
    wanted = {topo.inode_a, topo.inode_b}
    trace = BackgroundTrace(agent, {"netns": sorted(wanted), "filter": "udp port 9999", "track_skb": True,
                                    "duration": "12s", "max_events": 1000000})
    wait_until(lambda: trace_e2e.list_traces(agent), 20, "the netns-set trace to start")
    time.sleep(2.0)
    flood_everywhere(topo)
    status, lines = trace.wait(30, "the netns-set track_skb trace")
    check(status == 200, "the netns-set track_skb trace", 200, (status, lines[:2]))
    set_events, _ = trace_e2e.split_summary(lines, "netns-set trace")
    outside = [e for e in set_events if e.get("netns") not in wanted]
    check(len(set_events) >= 100, "the set's own tracked UDP", ">= 100 events", len(set_events))
    check(not outside, "events outside the netns set with track_skb", "none", f"{len(outside)}, e.g. {outside[:2]}")
    return (f"agent: {len(events)} events ({summary['events_lost']} lost, counted), 0 outside netns "
            f"{topo.inode_b}; a netns set: {len(set_events)} events, 0 outside it; pwru semantics in the same "
            f"traffic: {cli_foreign} of {len(cli_events)} events outside it")


def main_port_post(agent, body, token, headers):
    """(status, [JSON lines]) of a POST /v1/traces to the main port with extra headers."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    all_headers = {"Content-Type": "application/json", **headers}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/v1/traces", body=json.dumps(body).encode(), headers=all_headers)
        res = conn.getresponse()
        text = res.read().decode()
    finally:
        conn.close()
    return res.status, [json.loads(line) for line in text.splitlines() if line.strip()]


class PlaintextPeer:
    """A plain TCP listener standing in for an agent pod's peer port: records
    every byte each connection sends for up to 2 s, then answers as an
    attacker's HTTP server would (a 200 with a made-up event) and closes."""

    FAKE_EVENT = b'{"func":"plaintext_listener"}\n'

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = []  # bytes, one entry per connection
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            data = b""
            conn.settimeout(0.2)
            end = time.monotonic() + 2.0
            while time.monotonic() < end and len(data) < 65536:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            with self.lock:
                self.received.append(data)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(self.FAKE_EVENT), self.FAKE_EVENT))
            except OSError:
                pass
            conn.close()

    def kill(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=5)


@scenario
def scenario_relay_credentials(ctx):
    """A trace relayed to another node's agent carries the caller's identity, never their token, over mutual
    TLS; only pods of the agents' DaemonSet holding the release's certificate are sent requests; the peer port
    refuses strangers at the handshake and checks a relayed caller again; relay headers on the main port gain
    nothing."""
    alice, bob = "alice-secret-token-3f9c2e", "bob-secret-token-77aa1d"
    certs = trace_e2e.PeerCerts(ctx.workdir)
    _, api, _, agent = trace_e2e.pod_agent(ctx, auth="kubernetes",
                                           extra="  peer_namespace: pwru\n" + certs.traces_yaml("n1"))
    for token, user in ((alice, "alice"), (bob, "bob")):
        api.control("user", {"token": token, "username": user, "groups": ["system:authenticated", f"team-{user}"]})
    api.control("allow", {"username": "alice", "verb": "create", "resource": "pods", "subresource": "trace",
                          "namespace": "shop"})
    trace_e2e.register_agent_pod(api, "n1", agent)
    peer_port = trace_e2e.peer_port_of(agent)

    # (a) The n2 agent is a recording server holding a certificate of the release.
    recorder = ctx.track(trace_e2e.RecordingPeer(*certs.issue("n2"), certs.ca))
    api.control("add", {"uid": "db-uid", "namespace": "shop", "name": "db-0", "node": "n2"})
    trace_e2e.register_agent_pod(api, "n2", None, peer_port=recorder.port)
    body = {"namespace": "shop", "pod": "db-0", "filter": "icmp", "duration": "2s"}
    status, lines = trace_e2e.post(agent, json.dumps(body), token=alice)
    check(status == 200, "alice's trace of shop/db-0 (node n2) through the n1 agent", 200, (status, lines[:2]))
    events, summary = trace_e2e.split_summary(lines, "relayed trace")
    check(summary.get("target") == "the recording peer" and [e.get("func") for e in events] == ["recording_peer"],
          "the relayed stream", "the n2 peer's event and summary", lines)
    check(len(recorder.requests) == 1, "requests the n2 peer received", 1, len(recorder.requests))
    got = recorder.requests[0]
    raw = got["head"] + got["body"]
    check(alice.encode() not in raw and alice[:12].encode() not in raw, "alice's token in what the n2 peer received",
          "absent (not even its first 12 bytes)", raw.decode(errors="replace"))
    names = {k.lower() for k in got["headers"]}
    check("authorization" not in names and "cookie" not in names, "credential headers at the n2 peer", "none",
          sorted(names))
    caller = json.loads(got["headers"].get("X-Pwru-Caller", "{}"))
    check(caller.get("user") == "alice" and "team-alice" in caller.get("groups", []),
          "X-Pwru-Caller at the n2 peer", "alice with her groups, as the API server's TokenReview said", caller)
    check(got["headers"].get("X-Pwru-Forwarded-By") == "n1", "X-Pwru-Forwarded-By", "n1", got["headers"])
    check(json.loads(got["body"]) == body, "the relayed body", body, got["body"])
    sans = [v for k, v in (got["client_cert"] or {}).get("subjectAltName", ())]
    check(trace_e2e.PEER_NAME in sans, "the n1 agent's client certificate", f"DNS:{trace_e2e.PEER_NAME}",
          got["client_cert"])

    # (b) n3: pods with the agents' labels that the DaemonSet does not own, or not Ready. They even hold a
    # certificate of the release: ownership alone keeps them out.
    impostor = ctx.track(trace_e2e.RecordingPeer(*certs.issue("impostor"), certs.ca))
    api.control("add", {"uid": "cache-uid", "namespace": "shop", "name": "cache-0", "node": "n3"})
    impostors = (("pwru-agent-7c9f-x2", {"kind": "ReplicaSet", "name": "pwru-agent-7c9f"}, True),
                 ("pwru-agent-evil-q", {"kind": "DaemonSet", "name": "pwru-agent-evil"}, True),
                 ("pwru-agent-adopted", {"kind": "DaemonSet", "name": "pwru-agent", "controller": False}, True),
                 ("pwru-agent-extensions", {"kind": "DaemonSet", "name": "pwru-agent",
                                            "apiVersion": "extensions/v1beta1"}, True),
                 ("pwru-agent-bare", None, True),
                 ("pwru-agent-unready", trace_e2e.AGENT_OWNER, False))
    for name, owner, ready in impostors:
        trace_e2e.register_agent_pod(api, "n3", None, owner=owner, name=name, peer_port=impostor.port, ready=ready)
    status, lines = trace_e2e.post(agent, json.dumps({"namespace": "shop", "pod": "cache-0"}), token=alice)
    check(status == 502 and "no pwru-agent of DaemonSet pwru/pwru-agent" in lines[0].get("error", ""),
          "alice's trace of shop/cache-0 (node n3, no agent of the DaemonSet)", "502 naming the DaemonSet",
          (status, lines))
    check(impostor.connections == 0, "connections to the n3 impostors", 0, impostor.connections)
    log = agent.stderr()
    passed = [name for name, _, _ in impostors if f"not relaying to pod pwru/{name}:" in log]
    check(len(passed) == len(impostors), "the n1 agent's log", "each impostor passed over, with why",
          (passed, log[-2000:]))

    # (e) The DaemonSet's pods on n4 and n5, but answering with another CA's certificate, or the CA's with
    # another name: the n1 agent's handshake refuses them before any request.
    rogue_ca = trace_e2e.PeerCerts(ctx.workdir, "rogue-ca")
    wrong_name = certs.issue("wrong-name", dns="evil.example")
    rogues = {"n4": ctx.track(trace_e2e.RecordingPeer(*rogue_ca.issue("n4"), certs.ca)),
              "n5": ctx.track(trace_e2e.RecordingPeer(*wrong_name, certs.ca))}
    for node, rogue in rogues.items():
        api.control("add", {"uid": f"q-{node}", "namespace": "shop", "name": f"queue-{node}", "node": node})
        trace_e2e.register_agent_pod(api, node, None, peer_port=rogue.port)
        status, lines = trace_e2e.post(agent, json.dumps({"namespace": "shop", "pod": f"queue-{node}"}), token=alice)
        check(status == 502 and "TLS handshake" in lines[0].get("error", ""),
              f"alice's trace of a pod on {node}, whose agent has a certificate it should not",
              "502: the TLS handshake failed", (status, lines))
        check(not rogue.requests, f"requests the {node} peer received", "none", rogue.requests)

    # (f) The DaemonSet's pod on n6 listens in plaintext on its peer port (what a relay in clear would feed): it
    # gets a TLS ClientHello and nothing else, and its answer never reaches alice.
    plain = ctx.track(PlaintextPeer())
    api.control("add", {"uid": "ledger-uid", "namespace": "shop", "name": "ledger-0", "node": "n6"})
    trace_e2e.register_agent_pod(api, "n6", None, peer_port=plain.port)
    status, lines = trace_e2e.post(agent, json.dumps({"namespace": "shop", "pod": "ledger-0", "filter": "icmp"}),
                                   token=alice)
    check(status == 502 and "TLS handshake" in lines[0].get("error", ""),
          "alice's trace of a pod on n6, whose agent port speaks plaintext", "502: the TLS handshake failed",
          (status, lines))
    check(not any("plaintext_listener" in json.dumps(line) for line in lines), "alice's answer",
          "nothing the plaintext listener sent", lines)
    with plain.lock:
        heard = list(plain.received)
    check(len(heard) == 1, "connections to the plaintext listener", 1, len(heard))
    hello = heard[0]
    # A TLS record: content type 22 (handshake), version 3.x, then a ClientHello (handshake type 1).
    check(len(hello) > 5 and hello[0] == 0x16 and hello[1] == 0x03 and hello[5] == 0x01,
          "the bytes the plaintext listener got", "one TLS ClientHello", hello[:64])
    check(len(hello) == 5 + int.from_bytes(hello[3:5], "big"), "the plaintext listener's bytes",
          "the ClientHello record and nothing after it", f"{len(hello)} bytes, record of {hello[3:5].hex()}")
    leaked = [w for w in (alice.encode(), alice[:8].encode(), b"alice", b"Authorization", b"X-Pwru-Caller",
                          b"POST", b"ledger-0", b"team-alice") if w in hello]
    check(not leaked, "credentials, identity or request in the plaintext listener's bytes", "none", leaked)

    # (c) The n1 agent's peer port: no certificate, another CA's, or the CA's with another name are refused at
    # the handshake; the release's certificate is answered, and the caller it asserts is checked again.
    web0 = {"namespace": "shop", "pod": "web-0", "filter": "icmp", "duration": "1s"}
    as_alice = {"X-Pwru-Caller": json.dumps({"user": "alice", "groups": ["system:authenticated"]}),
                "X-Pwru-Forwarded-By": "n2"}
    refused = []
    for what, cert in (("no certificate", (None, None)), ("another CA's certificate", rogue_ca.issue("stranger")),
                       ("the CA's certificate named evil.example", wrong_name)):
        status, why = trace_e2e.peer_port_request(peer_port, web0, as_alice, certs.ca, *cert)
        check(status is None, f"the peer port, to a client with {what}", "refused at the TLS handshake",
              (status, why))
        reason = re.search(r"\[SSL: (\w+)\]", why)
        # The alert, or EOF when the agent's close overtook it (TLS 1.3 refuses a client after its Finished).
        refused.append(reason.group(1).lower() if reason else why.split(":")[0])
    peer_cert = certs.issue("relay")
    status, lines = trace_e2e.peer_port_request(
        peer_port, web0, {**as_alice, "X-Pwru-Caller": json.dumps({"user": "bob", "groups": ["team-bob"]})},
        certs.ca, *peer_cert)
    check(status == 403 and "bob may not create pods/trace" in lines[0].get("error", ""),
          "a relayed request for bob (a peer's certificate)", "403 from the n1 agent's own SubjectAccessReview",
          (status, lines))
    status, lines = trace_e2e.peer_port_request(peer_port, web0, as_alice, certs.ca, *peer_cert)
    check(status == 200, "a relayed request for alice (a peer's certificate)", 200, (status, lines[:2]))
    trace_e2e.split_summary(lines, "relayed to n1")
    status, lines = trace_e2e.peer_port_request(peer_port, web0, {"X-Pwru-Forwarded-By": "n2"}, certs.ca, *peer_cert)
    check(status == 400 and "X-Pwru-Caller" in lines[0].get("error", ""), "a relayed request naming no caller",
          "400", (status, lines))

    # (d) The main port ignores relay headers: a forged caller gains nothing over the token sent.
    forged = {"X-Pwru-Caller": json.dumps({"user": "alice", "groups": ["system:masters"]}),
              "X-Pwru-Forwarded-By": "n2"}
    for what, token, pod, want, message in (
            ("bob's token", bob, "web-0", 403, "bob may not create pods/trace"),
            ("bob's token, a pod on n2", bob, "db-0", 403, "bob may not create pods/trace"),
            ("no token", None, "web-0", 401, "Authorization: Bearer")):
        status, lines = main_port_post(agent, {"namespace": "shop", "pod": pod, "duration": "1s"}, token, forged)
        check(status == want and message in lines[0].get("error", ""),
              f"the main port with a forged X-Pwru-Caller (alice, system:masters) and {what}",
              f"{want} with '{message}'", (status, lines))
    # Groups too: pwru-admins may trace nodes. A relayed caller in that group gets a node trace on the peer port
    # (so the rule works); alice claiming the group on the main port does not.
    api.control("allow", {"group": "pwru-admins", "verb": "create", "resource": "nodes", "subresource": "trace"})
    node_trace = {"filter": "host 192.0.2.1", "duration": "1s"}
    status, lines = trace_e2e.peer_port_request(
        peer_port, node_trace, {"X-Pwru-Caller": json.dumps({"user": "carol", "groups": ["pwru-admins"]}),
                                "X-Pwru-Forwarded-By": "n2"}, certs.ca, *peer_cert)
    check(status == 200, "a relayed node trace for carol of group pwru-admins (the control)", 200,
          (status, lines[:2]))
    status, lines = main_port_post(agent, node_trace, alice,
                                   {"X-Pwru-Caller": json.dumps({"user": "carol", "groups": ["pwru-admins"]}),
                                    "X-Pwru-Forwarded-By": "n2"})
    check(status == 403 and "alice may not create nodes/trace" in lines[0].get("error", ""),
          "the main port: alice's token with a forged X-Pwru-Caller (carol, pwru-admins), a node trace",
          "403 for alice: the header is never read there", (status, lines))
    check(len(recorder.requests) == 1, "requests the n2 peer received in the end", 1, len(recorder.requests))
    return (f"relayed request: 0 bytes of the token, caller alice + {len(caller['groups'])} groups; "
            f"plaintext peer port got {len(hello)} bytes, one TLS ClientHello and no secret, caller got 502; "
            f"{len(impostors)} impostor pods on n3: {impostor.connections} connections; 2 wrong-certificate agents: "
            f"0 requests; peer port refused {len(refused)} handshakes ({', '.join(refused)}), re-checked bob (403); "
            f"forged headers on the main port: 403, 403, 401, 403 (forged group; 200 for it relayed)")


# Slowloris: the agent's defaults (config/pwru-agent.yaml) are what is tested.
HEAD_TIMEOUT = 5.0            # http.request_head_timeout_seconds
PER_CLIENT_CAP = 32           # http.max_connections_per_client
MAX_CONNECTIONS = 256         # http.max_connections
PROBE_WITHIN = 1.0            # the issue's bound: /healthz (and /metrics) answer within 1 s throughout
ATTACK_SECONDS = 20.0         # slow connections are (re)opened this long...
SLOW_CONNECTION_LIMIT = HEAD_TIMEOUT + 5.0  # ...and none may live longer than this
LINE_EVERY = 2.0              # one header line per slow connection this often
SLOW_BODY_HEAD = (b"POST /v1/traces HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 4096\r\n\r\n")


class SlowClient:
    """One slot of the attack: a connection from `source` that sends a request
    head one line every LINE_EVERY seconds and never ends it (or, with `body`,
    a whole head of a POST /v1/traces and then its body a byte every
    LINE_EVERY seconds); reopened when the agent closes it, while the attack
    lasts."""

    def __init__(self, source, port, body=False):
        self.source, self.port, self.body = source, port, body
        self.sock = None

    def open(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2.0,
                                             source_address=(self.source, 0))
        self.sock.setblocking(False)
        self.opened_at = time.monotonic()
        self.next_line_at = self.opened_at
        self.lines = 0
        self.data = b""

    def poll(self, now):
        """None while open, else (seconds it lived, what the agent sent before closing)."""
        closed = False
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    closed = True
                    break
                self.data += chunk
        except BlockingIOError:
            pass
        except ConnectionError:  # the agent closed, then our next line drew a reset
            closed = True
        if closed:
            self.sock.close()
            self.sock = None
            return time.monotonic() - self.opened_at, self.data
        if now >= self.next_line_at:
            if self.body:  # JSON allows leading blanks: the body is valid so far, just never whole
                line = SLOW_BODY_HEAD if self.lines == 0 else b" "
            else:
                line = b"GET /healthz HTTP/1.1\r\n" if self.lines == 0 else b"X-Slow-%d: 1\r\n" % self.lines
            try:
                self.sock.send(line)
            except (BlockingIOError, ConnectionError):
                pass  # seen as closed at the next poll
            self.lines += 1
            self.next_line_at += LINE_EVERY
        return None

    def kill(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class SlowClosing:
    """A socket the context closes at teardown (kill), like the other tracked things."""

    def __init__(self, sock):
        self.sock = sock

    def kill(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def timed_get(agent, path, source):
    """(status, body, seconds) of a GET from `source`, as a kubelet or Prometheus on another address."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5.0, source_address=(source, 0))
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        body = res.read().decode()
    except (OSError, http.client.HTTPException) as e:
        raise Failure(f"GET {path} from {source} during the attack", "an answer", repr(e))
    finally:
        conn.close()
    return res.status, body, time.monotonic() - start


@scenario
def scenario_slowloris(ctx):
    """Hundreds of connections trickling header lines (or, a third of them, a POST body) from a dozen
    addresses, more than the agent takes (http.max_connections), and every trace slot held: probes and scrapes
    answer within 1 s throughout; slow heads and bodies are cut at the 5 s deadline or sooner, evicted by newer
    connections at the cap; one address gets 429 past its own cap; no connection is refused for the total cap
    and no trace stream is touched."""
    _, _, _, agent = trace_e2e.pod_agent(ctx)
    # Every trace slot (traces.max_concurrent, 4) held by a quiet stream from 127.0.0.1 for the whole attack.
    holders = [ctx.track(SlowClosing(trace_e2e.open_trace(agent, {"filter": "host 192.0.2.1", "duration": "120s"})))
               for _ in range(4)]
    wait_until(lambda: len(trace_e2e.list_traces(agent)) == 4, 30, "four running traces")
    # 127.0.0.1 also carries the traces: 40 slow slots there exceed its cap. Ten more addresses, each
    # under its own cap, take the total past http.max_connections: per-address caps alone would let
    # them lock the probes out, so the agent must make room by evicting the longest-waiting requests. A third
    # of those send their head at once and trickle the body: a whole head must not buy a safe place.
    slots = [SlowClient("127.0.0.1", agent.port) for _ in range(40)]
    slots += [SlowClient(f"127.0.0.{host}", agent.port, body=i % 3 == 0)
              for host in range(11, 21) for i in range(PER_CLIENT_CAP - 2)]
    check(len(slots) > MAX_CONNECTIONS, "slow connections in the attack", f"over {MAX_CONNECTIONS}", len(slots))
    for slot in slots:
        ctx.track(slot)
    cut_after, body_cut_after, refused, max_open = [], [], [], 0
    probes, worst = 0, 0.0
    start = time.monotonic()
    for slot in slots:
        slot.open()
    while True:
        now = time.monotonic()
        if now - start > base.remaining(ATTACK_SECONDS + SLOW_CONNECTION_LIMIT):
            raise Failure("slow connections", f"all closed by the agent within {SLOW_CONNECTION_LIMIT}s",
                          f"{sum(s.sock is not None for s in slots)} still open")
        attacking = now - start < ATTACK_SECONDS
        for slot in slots:
            if slot.sock is None:
                continue
            ended = slot.poll(now)
            if ended is None:
                check(now - slot.opened_at < SLOW_CONNECTION_LIMIT, "a slow connection's life",
                      f"under {SLOW_CONNECTION_LIMIT}s", f"{now - slot.opened_at:.1f}s from {slot.source}")
                continue
            lived, data = ended
            if data.startswith(b"HTTP/1.1 429 "):
                refused.append((slot.source, data))
            elif not data:
                cut_after.append(lived)
            elif slot.body and data.startswith(b"HTTP/1.1 400 ") and b"did not arrive whole" in data:
                body_cut_after.append(lived)
            else:
                raise Failure(f"what a slow connection from {slot.source} got",
                              "nothing (cut), a 429, or for a trickled body a 400", data[:300])
            if attacking:
                slot.open()
        if not any(slot.sock is not None for slot in slots):
            break
        # The kubelet and Prometheus, from addresses of their own.
        for path, source, want in (("/healthz", "127.0.0.9", "ok"), ("/metrics", "127.0.0.10", "pwru_build_info")):
            status, body, took = timed_get(agent, path, source)
            check(status == 200 and want in body, f"GET {path} during the attack", f"200 with {want}",
                  (status, body[:200]))
            check(took <= PROBE_WITHIN, f"GET {path} during the attack", f"within {PROBE_WITHIN}s", f"{took:.3f}s")
            worst = max(worst, took)
            probes += 1
            if path == "/metrics":
                max_open = max(max_open, int(agent_lib.scrape_series(body, "pwru_http_connections")
                                             .get(frozenset(), 0)))
        time.sleep(0.5)
    attack_took = time.monotonic() - start

    lives = cut_after + body_cut_after
    check(cut_after and body_cut_after and max(lives) <= HEAD_TIMEOUT + 1.5, "when slow connections were cut",
          f"heads and bodies, by the {HEAD_TIMEOUT:.0f}s deadline (+1.5s for polling)",
          f"{len(cut_after)} cut, {len(body_cut_after)} answered 400, after "
          f"{min(lives, default=0):.2f}..{max(lives, default=0):.2f}s")
    # The cap can be reached only while attack connections are open; gauge + the scrape's own + evictions
    # whose threads are ending (their sockets are shut down at once; on 2 busy cores a few dozen threads
    # can still be on their way out: 268 was seen with a build running beside the suite).
    check(MAX_CONNECTIONS - 32 <= max_open <= MAX_CONNECTIONS + 32, "connections the agent held open at once",
          f"about http.max_connections ({MAX_CONNECTIONS})", max_open)
    check(refused and all(src == "127.0.0.1" for src, _ in refused), "connections refused",
          "some, all from 127.0.0.1 (over its cap)", sorted({src for src, _ in refused}))
    for _, data in refused:
        body = data.split(b"\r\n\r\n", 1)[-1]
        check(b"http.max_connections_per_client" in body and "error" in json.loads(body),
              "a refused connection's answer", '429 with {"error": "...http.max_connections_per_client..."}', data)
    series = agent_lib.scrape_series(timed_get(agent, "/metrics", "127.0.0.10")[1], "pwru_http_connections_refused_total")
    by_reason = {dict(k)["reason"]: int(v) for k, v in series.items()}
    evicted = by_reason.get("evicted", 0)
    early = sum(lived < HEAD_TIMEOUT - 0.5 for lived in cut_after)
    check(by_reason.get("head_timeout", 0) + evicted == len(cut_after) and evicted > 0 and early <= evicted and
          by_reason.get("body_timeout", 0) == len(body_cut_after) and
          by_reason.get("max_connections_per_client") == len(refused) and
          set(by_reason) <= {"head_timeout", "body_timeout", "evicted", "max_connections_per_client"},
          "pwru_http_connections_refused_total by reason",
          f"head_timeout + evicted = {len(cut_after)} cut ({early} of them before the deadline, so evicted), "
          f"body_timeout {len(body_cut_after)}, max_connections_per_client {len(refused)}, nothing else", by_reason)
    check(len(trace_e2e.list_traces(agent)) == 4, "traces after the attack", "the 4 holders still streaming",
          trace_e2e.list_traces(agent))
    for holder in holders:
        holder.kill()
    wait_until(lambda: not trace_e2e.list_traces(agent), 5, "the held traces to end")
    return (f"{probes} probes/scrapes over {attack_took:.0f}s, slowest {worst * 1000:.0f} ms; "
            f"{len(lives)} slow connections cut after {min(lives):.2f}-{max(lives):.2f}s "
            f"({by_reason.get('head_timeout', 0)} heads and {len(body_cut_after)} bodies at the deadline, "
            f"{evicted} evicted at the cap); "
            f"{len(refused)} refused with 429 from 127.0.0.1; up to {max_open} connections open at once")


def vm_hwm_mib(pid):
    """The process's peak resident memory (VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise Failure(f"/proc/{pid}/status", "a VmHWM line", "none")


def concurrent_summaries(agent, topo, body, what):
    """4 "summary" traces at once (the default traces.max_concurrent) over a UDP flood in the pod's netns, the
    host and the other netns; returns each trace's (events, summary)."""
    runs = [BackgroundTrace(agent, body) for _ in range(4)]
    wait_until(lambda: len(trace_e2e.list_traces(agent)) == 4, 30, f"4 {what} traces to start")
    time.sleep(2.0)  # listed while still attaching
    flood_everywhere(topo)
    results = []
    for i, run in enumerate(runs):
        status, lines = run.wait(60, f"{what} trace {i}")
        check(status == 200, f"{what} trace {i}", 200, (status, lines[:2]))
        results.append(trace_e2e.split_summary(lines, f"{what} trace {i}"))
    return results


CHART_MEMORY_LIMIT_MIB = 256


@scenario
def scenario_summary_memory(ctx):
    """4 concurrent "summary" traces under a UDP flood stay well inside the chart's memory limit with the default
    budget, and with a small traces.summary_memory_bytes the traces share it: journeys beyond it are counted and
    named in a note, while every fate kept stays decided."""
    small_budget = 2 << 20
    topo, api, _, agent = trace_e2e.pod_agent(ctx, extra=f"  summary_memory_bytes: {small_budget}\n")
    body = {"namespace": "shop", "pod": "web-0", "filter": "udp", "duration": "10s", "max_events": 1000000,
            "summary": True}
    results = concurrent_summaries(agent, topo, body, "small-budget")
    kept = cut = 0
    for i, (events, summary) in enumerate(results):
        note = summary.get("journeys_note", "")
        journeys = summary.get("journeys", [])
        check(len(events) >= 100, f"events of small-budget trace {i}", ">= 100", len(events))
        check("traces.summary_memory_bytes = 2 MiB, shared by all traces" in note and "not followed" in note,
              f"journeys_note of small-budget trace {i}", "the budget, what was cut and what to do", note or summary)
        check(summary.get("journeys_not_followed", 0) > 0, f"journeys_not_followed of small-budget trace {i}",
              "> 0 (counted)", summary.get("journeys_not_followed"))
        undecided = [j for j in journeys if j.get("fate") not in ("dropped", "delivered", "transmitted", "consumed",
                                                                 "in_flight")]
        check(journeys and not undecided, f"fates of small-budget trace {i}", "every journey kept has one",
              undecided[:2] or "no journeys")
        check(all(j.get("netns") == topo.inode_b for j in journeys), f"journeys of small-budget trace {i}",
              f"all in the pod's netns {topo.inode_b}", {j.get("netns") for j in journeys})
        kept += len(journeys)
        cut += summary["journeys_not_followed"]
    # A journey is charged at least its record (a few hundred bytes): 4 traces
    # sharing 2 MiB cannot together keep what 4 budgets of 2 MiB would.
    check(kept < small_budget // 200, "journeys kept by the 4 traces together", f"< {small_budget // 200} "
          "(one 2 MiB budget shared)", kept)
    agent.stop()

    workdir = os.path.join(ctx.workdir, "default-budget")
    os.makedirs(workdir)
    token_file = os.path.join(ctx.workdir, "trace-token")
    big = ctx.track(agent_lib.Agent(ctx.binary, workdir, extra_yaml=api.agent_yaml() +
                                    f"traces:\n  auth: token\n  token_file: {token_file}\n")).start().wait_ready()
    wait_until(lambda: (agent_lib.metric_value(big, "pwru_kubernetes_pod_netns") or 0) >= 1, 30,
               "the agent to find shop/web-0's netns")
    # The issue's reproduction: node-wide, so every flood counts.
    node_body = {"filter": "udp", "duration": "10s", "max_events": 1000000, "summary": True}
    results = concurrent_summaries(big, topo, node_body, "node-wide")
    peak = vm_hwm_mib(big.proc.pid)
    journeys = sum(len(summary.get("journeys", [])) for _, summary in results)
    events = sum(len(e) for e, _ in results)
    check(journeys >= 4 * 1000, "journeys of 4 node-wide summary traces", ">= 4000 (the flood was followed)",
          journeys)
    check(peak < CHART_MEMORY_LIMIT_MIB * 0.75, "the agent's peak resident memory (VmHWM)",
          f"< {CHART_MEMORY_LIMIT_MIB * 0.75:.0f} MiB (3/4 of the chart's limit)", f"{peak:.0f} MiB")
    return (f"2 MiB budget: {kept} journeys kept, {cut} counted as not followed, notes in all 4 summaries; "
            f"default budget: {events} events, {journeys} journeys in 4 concurrent node-wide summaries, "
            f"VmHWM {peak:.0f} MiB (chart limit {CHART_MEMORY_LIMIT_MIB} MiB)")


# regex_dos and malformed_bodies (issue 15, items 6-8): what a client sends is answered fast, with a 400 in the
# agent's words, and nothing it sends stalls a worker or the probes.

REGEX_ANSWER_WITHIN = 0.1  # the issue's bound for a pathological "functions" that matches nothing
REGEX_HARD_LIMIT = 1.0     # no single such answer may take longer, however loaded the machine
LOAD_ANSWER_WITHIN = 5.0   # a matching pattern loads programs (or starts the trace) before answering
HEALTHZ_WITHIN = 1.0       # /healthz while the attack runs, as in slowloris

# Nested quantifiers that make a backtracking engine (std::regex, PCRE) try exponentially many splits of a
# ~20-character kernel function name before giving up; none can match a C identifier ('!', '(' never occur in
# one), so each is answered "matches no kernel function" after every name was tried.
NO_MATCH_PATTERNS = [r"(a+)+$", r"(\w+)+!", r"([a-z_0-9]+)*!", r"((_|[a-z])+)+\d!", r"(x+x+)+y!",
                     r"^(([a-z_])+.)+!$", r"(.*_.*)*!", r"(\w*)*\(", r"(_?[a-z0-9]+)+_rcv!"]
# Backtracking-shaped too, but whole kernel names match: these get as far as loading programs.
MATCH_PATTERNS = [r"(\w+)+_rcv", r"(_?[a-z0-9]+)+_rcv"]
NO_MATCH_CONTROL = "zzz_no_such_function"
MATCH_CONTROL = "ip_rcv"


def token_agent(ctx):
    """An agent with traces.auth token (trace_e2e.TOKEN) and Kubernetes off: what these scenarios attack."""
    token_file = os.path.join(ctx.workdir, "trace-token")
    with open(token_file, "w") as f:
        f.write(trace_e2e.TOKEN + "\n")
    return ctx.track(agent_lib.Agent(ctx.binary, ctx.workdir, extra_yaml=(
        f"kubernetes:\n  enabled: off\ntraces:\n  auth: token\n  token_file: {token_file}\n"))).start().wait_ready()


def timed_post(agent, body, token=trace_e2e.TOKEN, timeout=30.0):
    """(status, error text or "", seconds to the answer's head) of a POST /v1/traces. A trace that starts (200)
    is hung up on at once, which ends it; an error's body is read."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=base.remaining(timeout))
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    start = time.monotonic()
    try:
        conn.request("POST", "/v1/traces", body=payload, headers=headers)
        res = conn.getresponse()
        took = time.monotonic() - start
        if res.status == 200:
            return 200, "", took
        text = res.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        raise Failure(f"POST /v1/traces {payload[:120]!r}", f"an answer within {timeout}s", repr(e))
    finally:
        conn.close()
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        raise Failure(f"the answer to {payload[:120]!r}", '{"error": "..."}', (res.status, text[:300]))
    return res.status, error, took


class HealthzProber:
    """GET `path` (/healthz) every 50 ms on a thread until stopped: the slowest answer, and every one that failed
    or took longer than `within`."""

    def __init__(self, agent, path="/healthz", within=HEALTHZ_WITHIN):
        self.agent, self.worst, self.count, self.bad = agent, 0.0, 0, []
        self.path, self.within = path, within
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        end = time.monotonic() + 240  # bounded even if stop() is never reached
        while not self.stopping.is_set() and time.monotonic() < end:
            start = time.monotonic()
            status, body = agent_lib.http_get(self.agent.url(self.path), timeout=max(5.0, 2 * self.within))
            took = time.monotonic() - start
            self.worst, self.count = max(self.worst, took), self.count + 1
            if status != 200 or took > self.within:
                self.bad.append((status, round(took, 3), body[:100]))
            self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        check(self.count >= 5, f"{self.path} probes during the attack", ">= 5", self.count)
        check(not self.bad, f"{self.path} during the attack", f"200 within {self.within}s every time",
              f"{len(self.bad)} of {self.count} not: {self.bad[:5]}")

    def kill(self):
        self.stopping.set()


def functions_answer(agent, pattern):
    """(kind, seconds) of a trace request with "functions": pattern: "none" (400, matches no function) or
    "matched" (a trace that started, or, on a node without kprobes, the 400 saying functions need them, given
    once the pattern has matched)."""
    status, error, took = timed_post(agent, {"functions": pattern, "duration": "1s", "filter": "host 192.0.2.1"})
    if status == 400 and "matches no kernel function among the" in error and "whole name must match" in error:
        return "none", took
    if status == 200 or (status == 400 and '"functions" selects kprobes, and this node has no kprobe backend'
                         in error):
        return "matched", took
    raise Failure(f'the answer to "functions": {pattern!r}', "400 matching no function, or a trace that starts",
                  (status, error))


@scenario
def scenario_regex_dos(ctx):
    """Catastrophic-backtracking patterns in "functions": each answered as fast as a plain name (within 100 ms
    when the plain one is), alone and three at a time, while /healthz keeps answering within 1 s."""
    agent = token_agent(ctx)
    prober = ctx.track(HealthzProber(agent))

    def best_of(pattern, want, tries=3):
        times = []
        for _ in range(tries):
            kind, took = functions_answer(agent, pattern)
            check(kind == want, f'"functions": {pattern!r}', want, kind)
            check(took <= (REGEX_HARD_LIMIT if want == "none" else LOAD_ANSWER_WITHIN),
                  f'the answer to "functions": {pattern!r}', "within the hard limit", f"{took:.3f}s")
            times.append(took)
        return min(times)

    control = best_of(NO_MATCH_CONTROL, "none")
    # 100 ms is the bound. Most of an answer is not the regex (the agent reads the kernel's BTF for each
    # request, ~50 ms here): on a machine so busy that a plain name takes longer, the bound is 1.5 times the
    # plain name's time. A backtracking engine needs seconds to minutes for these, far beyond either.
    bound = max(REGEX_ANSWER_WITHIN, 1.5 * control)
    worst_none = 0.0
    for pattern in NO_MATCH_PATTERNS:
        took = best_of(pattern, "none")
        check(took <= bound, f'"functions": {pattern!r}, best of 3', f"answered within {bound * 1000:.0f} ms",
              f"{took * 1000:.0f} ms (a plain name: {control * 1000:.0f} ms)")
        worst_none = max(worst_none, took)
    load_control = best_of(MATCH_CONTROL, "matched", tries=2)
    worst_loaded = 0.0
    for pattern in MATCH_PATTERNS:
        took = best_of(pattern, "matched", tries=2)
        check(took <= load_control + 1.0, f'"functions": {pattern!r}, best of 2',
              f"as fast as '{MATCH_CONTROL}' ({load_control:.2f}s) + 1 s", f"{took:.2f}s")
        worst_loaded = max(worst_loaded, took)

    # Three attackers at once (the cap is four traces: none is turned away with 429).
    answers, errors = [], []

    def attacker():
        try:
            for pattern in NO_MATCH_PATTERNS:
                answers.append(functions_answer(agent, pattern))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=base.remaining(60))
    check(not errors and all(not t.is_alive() for t in threads), "three concurrent attackers",
          "every request answered", errors[:3] or "still running")
    slowest = max(took for _, took in answers)
    check(len(answers) == 3 * len(NO_MATCH_PATTERNS) and slowest <= REGEX_HARD_LIMIT,
          "answers to three concurrent attackers", f"{3 * len(NO_MATCH_PATTERNS)}, each within {REGEX_HARD_LIMIT}s",
          f"{len(answers)}, slowest {slowest:.3f}s")
    prober.stop()
    check(agent.proc.poll() is None, "the agent after the attack", "running", agent.proc.returncode)
    wait_until(lambda: not trace_e2e.list_traces(agent), 5, "every trace of the attack to end")
    return (f"{len(NO_MATCH_PATTERNS)} no-match patterns: best-of-3 answers <= {worst_none * 1000:.0f} ms "
            f"(plain name {control * 1000:.0f} ms); {len(MATCH_PATTERNS)} matching: <= {worst_loaded:.2f}s "
            f"(plain '{MATCH_CONTROL}' {load_control:.2f}s); 3 concurrent attackers: slowest "
            f"{slowest * 1000:.0f} ms; /healthz {prober.count} probes, slowest {prober.worst * 1000:.0f} ms")


# Bodies the JSON parser refuses, or numbers beyond what a field can hold: each a 400 naming the byte or field.
MALFORMED_BODIES = [
    (b'{"filter":' + b"[" * 5000 + b"]" * 5000 + b"}", 'more than 32 deep (in "filter")'),
    (b"[" * 16000, "nests objects and arrays more than 32 deep"),
    (b'{"duration":1e400}', '"duration": a number is beyond what a JSON number may hold'),
    (b'{"netns":-1e400}', '"netns": a number is beyond what a JSON number may hold'),
    (b'{"max_events":18446744073709551616}', '"max_events" must be a positive integer'),
    (b'{"max_events":18446744073709551615}', '"max_events" 18446744073709551615 is over this agent\'s cap'),
    (b'{"max_events":0}', '"max_events" must be a positive integer'),
    (b'{"netns":18446744073709551616}', '"netns" must be a network namespace inode number, from 1 to 4294967295'),
    (b'{"netns":4294967296}', '"netns" must be a network namespace inode number, from 1 to 4294967295'),
    (b'{"netns":-1}', '"netns" must be a network namespace inode number'),
    (b'{"duration":18446744073709551616}', "over this agent's cap of 600s"),
    (b'{"duration":-0}', '"duration" must be a duration'),
    (b'{"duration":"1e400s"}', "\"duration\": unknown unit 'e'"),
    (b'{"duration":"0.' + b"0" * 50 + b'1h"}', '"duration" must be longer than 0'),
    (b'{"filter": icmp}', "the body is not valid JSON at byte 11"),
    (b'{"namespace":"shop","pod":', "it ends (at byte 26) before the JSON value does"),
    (b'{"filter":"\xff"}', "the body is not valid JSON at byte 11"),
    (b'{"filter":"\\ud800"}', "the body is not valid JSON at byte"),
    (b"", "the body is empty"),
]
# What nlohmann::json's exceptions say: never to reach a client.
LIBRARY_WORDS = ("json.exception", "parse_error", "syntax error while parsing", "out_of_range", "type_error")


@scenario
def scenario_malformed_bodies(ctx):
    """Deep nesting, 1e400, 2^64 and broken syntax in trace requests: 400s naming the byte or field in the agent's
    words, never 500 or the JSON library's text; and a caller without rights gets 403 for any body the target can
    be read from, learning nothing of the caps, while TokenReviews are cached and rate-limited."""
    _, api, _, agent = trace_e2e.pod_agent(ctx, auth="kubernetes")
    for token, user in (("ops-token", "ops"), ("bob-token", "bob")):
        api.control("user", {"token": token, "username": user, "groups": ["system:authenticated"]})
    api.control("allow", {"username": "ops", "verb": "*", "resource": "nodes", "subresource": "trace", "name": "n1"})
    api.control("allow", {"username": "ops", "verb": "create", "resource": "pods", "subresource": "trace"})

    for body, words in MALFORMED_BODIES:
        status, error, _ = timed_post(agent, body, token="ops-token")
        check(status == 400 and words in error, f"the answer to {body[:60]!r}", f"400 with '{words}'",
              (status, error))
        leaked = [w for w in LIBRARY_WORDS if w in error]
        check(not leaked, f"the answer to {body[:60]!r}", "the agent's words only", (leaked, error))

    # Authorization first: bob may trace nothing, and over-cap or invalid values get him a 403, not a 400
    # saying what the caps are; ops, who may, hears them.
    over_caps = [({"namespace": "shop", "pod": "web-0", "duration": "99h"}, "over this agent's cap of 600s"),
                 ({"namespace": "shop", "pod": "web-0", "max_events": 10 ** 30}, "(at most 1000000)"),
                 ({"duration": "99h", "max_events": 2 ** 64 - 1}, "over this agent's cap of 600s"),
                 ({"netns": 4026531840, "functions": "(a+)+$", "nope": 1}, 'unknown field "nope"')]
    for body, ops_words in over_caps:
        status, error, _ = timed_post(agent, body, token="bob-token")
        check(status == 403 and "bob may not create" in error and "cap" not in error and "at most" not in error,
              f"bob (no rights) sending {body}", "403, nothing about caps", (status, error))
        status, error, _ = timed_post(agent, body, token="ops-token")
        check(status == 400 and ops_words in error, f"ops (node rights) sending {body}", f"400 with '{ops_words}'",
              (status, error))

    # Accepted tokens are reviewed once, refused ones too (within traces.token_review's 10 s and 5 s); a flood
    # of made-up ones meets the review rate.
    for token, user in (("carol-token", "carol"), ("dave-token", "dave")):
        api.control("user", {"token": token, "username": user, "groups": ["system:authenticated"]})
    before = fake_api_stats(api)["token_reviews"]
    start = time.monotonic()
    for _ in range(10):
        for token in ("carol-token", "dave-token", "made-up-1", "made-up-2"):
            timed_post(agent, {"netns": 4026531840, "duration": "99h"}, token=token)
    repeated = fake_api_stats(api)["token_reviews"] - before
    check(time.monotonic() - start < 5.0, "40 requests with 4 tokens", "within the 5 s negative cache",
          f"{time.monotonic() - start:.1f}s")
    check(repeated == 4, "TokenReviews for 40 requests with 4 new tokens", "4 (each token once)", repeated)
    statuses = {}
    before = fake_api_stats(api)["token_reviews"]
    start = time.monotonic()
    for i in range(100):
        status, error, _ = timed_post(agent, {"duration": "1s"}, token=f"flood-{os.getpid()}-{i}")
        statuses[status] = statuses.get(status, 0) + 1
        if status == 429:
            check("new bearer tokens a second" in error, "a 429 during the token flood", "naming the review rate",
                  error)
    took = time.monotonic() - start
    flood_reviews = fake_api_stats(api)["token_reviews"] - before
    allowed = 40 + 20 * took  # traces.token_review burst and reviews_per_second
    check(statuses.get(429, 0) > 0 and flood_reviews <= allowed,
          f"100 made-up tokens in {took:.1f}s", f"some 429s, at most {allowed:.0f} TokenReviews",
          f"statuses {statuses}, {flood_reviews} reviews")
    check(agent_lib.http_get(agent.url("/healthz"))[0] == 200, "/healthz after the flood", 200, "not answering")
    return (f"{len(MALFORMED_BODIES)} malformed bodies: 400 in our words; bob: 403 x{len(over_caps)} where ops got "
            f"400 naming the cap; 40 requests with 4 tokens: {repeated} reviews; 100 made-up tokens in {took:.1f}s: "
            f"{statuses}, {flood_reviews} reviews")


def fake_api_stats(api):
    import ssl
    import urllib.request
    context = ssl.create_default_context(cafile=api.ca)
    with urllib.request.urlopen(f"https://127.0.0.1:{api.port}/__control/stats", timeout=5, context=context) as r:
        return json.loads(r.read())


def main(argv):
    return base.scenario_main(argv, SCENARIOS, trace_e2e.preflight, trace_e2e.Context, agent_lib.show_agent_failure,
                              agent_lib.teardown_agent, deadline=300.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
