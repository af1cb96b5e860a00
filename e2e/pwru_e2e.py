#!/usr/bin/env python3
"""End-to-end tests of the installed pwru program.

Usage (as root):  pwru_e2e.py /path/to/bin/pwru SCENARIO

Each scenario builds its own pair of network namespaces joined by a veth
pair (10.232.<n>.1/24 in ns-a, 10.232.<n>.2/24 in ns-b; no traffic ever
leaves them), starts pwru the way a user would, generates a few bounded
packets, stops pwru with SIGINT and checks what it printed.  Everything is
torn down in a finally block.  Missing root or tools is a failure, not a
skip.  Exit status: 0 pass, 1 fail.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SCENARIOS = ("text", "json", "limit_file", "bad_usage", "tcp_mark", "pcap", "track_skb", "summary", "output_pcap", "protocols", "skb_outputs", "trace_tc", "cli_parity")
TOOLS = ("ip", "ping", "nc", "nft", "ss", "tcpdump")

READY_TIMEOUT = 30.0   # pwru attach: BTF parse + ~30 tp_btf programs
EXIT_TIMEOUT = 15.0    # pwru exit after SIGINT / after the line limit
CMD_TIMEOUT = 20.0     # any helper command (ip, nft, ping, nc)
# Stop before ctest's TIMEOUT so the finally block can still clean up.
OVERALL_DEADLINE = 100.0

TEXT_COLUMNS = ["SKB", "CPU", "PROCESS", "NETNS", "MARK/x", "IFACE", "PROTO", "MTU", "LEN", "TUPLE", "FUNC"]
IFACE_WIDTH = 16
# pwru's jsonPrinter field order (internal/pwru/output.go).
JSON_KEYS = ["skb", "skb_shared_info", "cpu", "process", "func", "caller_func", "time", "netns", "mark", "iface",
             "proto", "mtu", "len", "cb", "tuple", "tunnel_tuple", "stack", "skb_metadata"]
JSON_TUPLE_KEYS = ["saddr", "daddr", "sport", "dport", "proto", "flags"]
TX_HOOKS = {"net_dev_queue", "net_dev_start_xmit", "net_dev_xmit"}
RX_HOOKS = {"netif_receive_skb", "netif_receive_skb_entry", "napi_gro_receive_entry"}


def kernel_drop_function():
    """The function pwru v1.0.9 names drops after: sk_skb_reason_drop since
    6.11 (kfree_skb_reason became its inline wrapper), kfree_skb_reason before."""
    with open("/proc/kallsyms") as f:
        for line in f:
            if line.rstrip("\n").split(" ")[2:3] == ["sk_skb_reason_drop"]:
                return "sk_skb_reason_drop"
    return "kfree_skb_reason"


DROP_FUNC = kernel_drop_function()
NO_SOCKET = f"{DROP_FUNC}(SKB_DROP_REASON_NO_SOCKET)"

TUPLE_RE = re.compile(
    r"^(?P<saddr>\[[0-9a-f:.]+\]|\d+\.\d+\.\d+\.\d+|):(?P<sport>\d+)->"
    r"(?P<daddr>\[[0-9a-f:.]+\]|\d+\.\d+\.\d+\.\d+|):(?P<dport>\d+)"
    r"\((?P<l4>tcp|udp|icmp|icmp6|)(?::[A-Z|]+)?\)$")
FUNC_RE = re.compile(r"^[a-z0-9_]+(\(SKB_DROP_REASON_[A-Z0-9_]+\))?$")
IPV4_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


class Failure(Exception):
    """A failed expectation: what was checked, expected, seen, and which run."""

    def __init__(self, what, expected, seen, run=None):
        super().__init__(what)
        self.what, self.expected, self.seen, self.run = what, expected, seen, run


class Deadline(Exception):
    pass


def check(cond, what, expected, seen, run=None):
    if not cond:
        raise Failure(what, expected, seen, run)


def remaining(timeout):
    """Caps a wait so that no scenario outlives OVERALL_DEADLINE."""
    left = OVERALL_DEADLINE - (time.monotonic() - START)
    if left <= 0:
        raise Deadline(f"scenario ran longer than {OVERALL_DEADLINE:.0f}s")
    return min(timeout, left)


def sh(args, input_bytes=None, timeout=CMD_TIMEOUT, ok=(0,)):
    """Runs a helper command; a non-zero status (unless allowed) is a failure."""
    try:
        p = subprocess.run(args, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=remaining(timeout))
    except subprocess.TimeoutExpired as e:
        raise Failure(f"helper command timed out: {' '.join(args)}", f"done within {timeout}s",
                      f"still running; output so far: {e.stdout!r} {e.stderr!r}")
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if ok is not None and p.returncode not in ok:
        raise Failure(f"helper command failed: {' '.join(args)}", f"exit status in {ok}",
                      f"exit status {p.returncode}\nstdout: {out}\nstderr: {err}")
    return p.returncode, out, err


# ---------------------------------------------------------------------------
# Topology


class Topology:
    def __init__(self, workdir):
        pid = os.getpid()
        self.ns_a, self.ns_b = f"pwe-{pid}-a", f"pwe-{pid}-b"
        self.veth_a, self.veth_b = f"pwe{pid}a", f"pwe{pid}b"   # <= 15 chars
        n = pid % 250 + 1
        self.ip_a, self.ip_b = f"10.232.{n}.1", f"10.232.{n}.2"
        self.path_a, self.path_b = f"/var/run/netns/{self.ns_a}", f"/var/run/netns/{self.ns_b}"
        self.workdir = workdir
        self.created = []
        self.procs = []

    def setup(self):
        for ns in (self.ns_a, self.ns_b):
            sh(["ip", "netns", "add", ns])
            self.created.append(ns)
        sh(["ip", "link", "add", self.veth_a, "netns", self.ns_a, "type", "veth",
            "peer", "name", self.veth_b, "netns", self.ns_b])
        for ns, dev, ip in ((self.ns_a, self.veth_a, self.ip_a), (self.ns_b, self.veth_b, self.ip_b)):
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            sh(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
            sh(["ip", "-n", ns, "link", "set", dev, "up"])
        self.inode_a = os.stat(self.path_a).st_ino
        self.inode_b = os.stat(self.path_b).st_ino
        self.ifindex_a = self._ifindex(self.ns_a, self.veth_a)
        self.ifindex_b = self._ifindex(self.ns_b, self.veth_b)

    @staticmethod
    def _ifindex(ns, dev):
        _, out, _ = sh(["ip", "-n", ns, "-o", "link", "show", "dev", dev])
        m = re.match(r"^(\d+):", out)
        check(m, f"ifindex of {dev} in {ns}", "'<index>: <name>...'", out)
        return int(m.group(1))

    def iface_a(self):
        return f"{self.veth_a}:{self.ifindex_a}"

    def iface_b(self):
        return f"{self.veth_b}:{self.ifindex_b}"

    def exec_args(self, ns, *args):
        return ["ip", "netns", "exec", ns, *args]

    def teardown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in reversed(self.created):
            try:
                out = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, timeout=10).stdout.decode()
                for pid in out.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, timeout=10)
            except Exception as e:  # keep cleaning the rest
                print(f"cleanup of netns {ns} failed: {e}", file=sys.stderr)

    # ---- traffic ---------------------------------------------------------

    def ping(self, target=None, count=3):
        """count ICMP echo requests from ns-a (to ns-b by default); returns ping's pid."""
        target = target or self.ip_b
        p = subprocess.Popen(self.exec_args(self.ns_a, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2",
                                            target),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(p)
        try:
            out, _ = p.communicate(timeout=remaining(CMD_TIMEOUT))
        except subprocess.TimeoutExpired:
            p.kill()
            raise Failure(f"ping from ns-a to {target}", f"done within {CMD_TIMEOUT}s", "still running")
        out = out.decode(errors="replace")
        check(p.returncode == 0 and re.search(rf"\b{count} received\b", out), f"ping -c {count} ns-a -> {target}",
              f"exit 0 and '{count} received'", f"exit {p.returncode}:\n{out}")
        return p.pid

    def udp_to_closed_port(self, port):
        _, out, _ = sh(["ip", "netns", "exec", self.ns_b, "ss", "-Hlun", f"sport = :{port}"])
        check(out.strip() == "", f"UDP port {port} closed in ns-b", "no listener", out)
        # nc may report the ICMP port unreachable with a non-zero status.
        sh(self.exec_args(self.ns_a, "nc", "-n", "-u", "-w1", self.ip_b, str(port)),
           input_bytes=b"pwru-e2e udp\n", ok=None)

    def tcp_connect(self, port):
        """A full TCP exchange ns-a -> nc listener in ns-b on port."""
        listener = subprocess.Popen(self.exec_args(self.ns_b, "nc", "-l", "-n", self.ip_b, str(port)),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
        self.procs.append(listener)
        wait_until(lambda: "LISTEN" in sh(["ip", "netns", "exec", self.ns_b, "ss", "-Hltn",
                                              f"sport = :{port}"])[1],
                   10.0, f"nc listener on {self.ip_b}:{port} in ns-b")
        payload = b"hello-pwru-e2e\n"
        sh(self.exec_args(self.ns_a, "nc", "-N", "-n", "-w", "3", self.ip_b, str(port)), input_bytes=payload)
        try:
            out, _ = listener.communicate(timeout=remaining(10))
        except subprocess.TimeoutExpired:
            listener.kill()
            raise Failure("nc listener exit after the client closed", "exit within 10s", "still running")
        check(payload in out, "data over the TCP connection", payload, out)


def wait_until(pred, timeout, what):
    end = time.monotonic() + remaining(timeout)
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise Failure(f"waiting for {what}", f"within {timeout}s", "timed out")


# ---------------------------------------------------------------------------
# pwru runs


class PwruRun:
    """One pwru process, started as a user would, output captured to files."""

    count = 0

    def __init__(self, ctx, args, ready=True):
        PwruRun.count += 1
        self.ctx = ctx
        self.n = PwruRun.count
        self.ready_file = os.path.join(ctx.workdir, f"ready-{self.n}")
        self.out_path = os.path.join(ctx.workdir, f"stdout-{self.n}")
        self.err_path = os.path.join(ctx.workdir, f"stderr-{self.n}")
        self.argv = [ctx.pwru] + (["--ready-file", self.ready_file] if ready else []) + list(args)
        self.proc = None
        self.rc = None
        ctx.runs.append(self)

    def cmdline(self):
        return " ".join(self.argv)

    def start(self):
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.ctx.topo_procs.append(self.proc)
        return self

    def wait_ready(self):
        end = time.monotonic() + remaining(READY_TIMEOUT)
        while time.monotonic() < end:
            if os.path.exists(self.ready_file):
                return self
            if self.proc.poll() is not None:
                self.rc = self.proc.returncode
                raise Failure("pwru start-up", f"ready file {self.ready_file} created, pwru running",
                              f"pwru exited with {self.rc} before attaching", self)
            time.sleep(0.05)
        raise Failure("pwru start-up", f"ready file within {READY_TIMEOUT}s", "no ready file", self)

    def wait_exit(self, timeout=EXIT_TIMEOUT, what="pwru exit"):
        try:
            self.rc = self.proc.wait(timeout=remaining(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.rc = "killed"
            raise Failure(what, f"exit within {timeout}s", "still running (killed it)", self)
        return self.rc

    def stop(self, sig=signal.SIGINT):
        """SIGINT (or SIGTERM), then a bounded wait for exit status 0."""
        name = signal.Signals(sig).name
        check(self.proc.poll() is None, f"pwru still running before {name}", "running",
              f"exited with {self.proc.returncode}", self)
        self.proc.send_signal(sig)
        rc = self.wait_exit(what=f"pwru exit after {name}")
        check(rc == 0, f"pwru exit status after {name}", 0, rc, self)
        return self

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def events_received(self):
        m = re.search(r"^pwru: (\d+) events received$", self.stderr(), re.M)
        check(m, "stderr summary", "a line 'pwru: N events received'", self.stderr(), self)
        check(not re.search(r"events lost|malformed", self.stderr()), "stderr summary",
              "no lost or malformed events for a few packets", self.stderr(), self)
        return int(m.group(1))

    def dump(self, limit=150):
        lines = [f"--- pwru run #{self.n}: {self.cmdline()}", f"    exit status: {self.rc}",
                 "--- stderr:", self.stderr().rstrip()]
        out = self.stdout().splitlines()
        lines.append(f"--- stdout ({len(out)} lines{', first %d shown' % limit if len(out) > limit else ''}):")
        lines.extend(out[:limit])
        for extra in getattr(self, "extra_files", []):
            if os.path.exists(extra):
                with open(extra, "rb") as f:
                    content = f.read().decode(errors="replace").splitlines()
                lines.append(f"--- {extra} ({len(content)} lines):")
                lines.extend(content[:limit])
            else:
                lines.append(f"--- {extra}: does not exist")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Output parsing


def parse_text(text, run):
    """Parses pwru's text output: header + one event per line.

    The fixed-width columns SKB..LEN are cut at the header's column starts
    (IFACE is the 16-character window that ends one space before PROTO);
    TUPLE and FUNC are the two whitespace-separated words after that.
    Returns a list of dicts, one per event line.
    """
    lines = text.splitlines()
    check(lines, "text output", "a header line", "empty output", run)
    header = lines[0]
    words = [(m.group(), m.start()) for m in re.finditer(r"\S+", header)]
    check([w for w, _ in words] == TEXT_COLUMNS, "text header columns", " ".join(TEXT_COLUMNS), header, run)
    col = {w: s for w, s in words}
    proto_at = col["PROTO"]
    iface_at = proto_at - 1 - IFACE_WIDTH
    check(header[iface_at:proto_at - 1] == center("IFACE", IFACE_WIDTH), "IFACE header is centered in 16 chars",
          repr(center("IFACE", IFACE_WIDTH)), repr(header[iface_at:proto_at - 1]), run)
    events = []
    for i, line in enumerate(lines[1:], start=2):
        where = f"text line {i}: {line!r}"

        def cell(start, end, name, pattern):
            raw = line[start:end]
            value = raw.rstrip()
            check(len(raw) == end - start and raw.endswith(" ") and value and not value.startswith(" ")
                  and re.fullmatch(pattern, value),
                  f"column {name} (chars {start}..{end}) of {where}",
                  f"left-aligned value matching {pattern} followed by a space", repr(raw), run)
            return value

        ev = {"line": line}
        ev["skb"] = cell(col["SKB"], col["CPU"], "SKB", r"0x[0-9a-f]+")
        ev["cpu"] = int(cell(col["CPU"], col["PROCESS"], "CPU", r"\d+"))
        ev["process"] = cell(col["PROCESS"], col["NETNS"], "PROCESS", r".+:\d+")
        ev["netns"] = int(cell(col["NETNS"], col["MARK/x"], "NETNS", r"\d+"))
        ev["mark"] = cell(col["MARK/x"], iface_at, "MARK/x", r"[0-9a-f]+")
        iface_raw = line[iface_at:proto_at - 1]
        iface = iface_raw.strip()
        check(re.fullmatch(r"0|[^\s:]+:\d+|~\S+", iface) and iface_raw == center(iface, IFACE_WIDTH)
              and line[proto_at - 1:proto_at] == " ",
              f"column IFACE (chars {iface_at}..{proto_at - 1}) of {where}",
              "'name:ifindex' or '0' centered in 16 characters", repr(iface_raw), run)
        ev["iface"] = iface
        ev["proto"] = cell(col["PROTO"], col["MTU"], "PROTO", r"0x[0-9a-f]{4}")
        ev["mtu"] = int(cell(col["MTU"], col["LEN"], "MTU", r"\d+"))
        ev["len"] = int(cell(col["LEN"], col["TUPLE"], "LEN", r"\d+"))
        rest = line[col["TUPLE"]:].split()
        check(len(rest) == 2, f"TUPLE and FUNC of {where}", "two words after the LEN column", rest, run)
        ev["tuple"], ev["func"] = rest
        m = TUPLE_RE.match(ev["tuple"])
        check(m, f"TUPLE of {where}", "saddr:sport->daddr:dport(l4)", ev["tuple"], run)
        ev["t"] = m.groupdict()
        check(FUNC_RE.match(ev["func"]), f"FUNC of {where}", f"a tracepoint name, {DROP_FUNC}(SKB_DROP_REASON_*)",
              ev["func"], run)
        check(not ev["func"].endswith(")") or ev["func"].startswith(f"{DROP_FUNC}("),
              f"FUNC of {where}", f"a drop reason only on {DROP_FUNC}", ev["func"], run)
        # An IP skb's tuple has that family's addresses. (Not the converse: like
        # pwru, the tuple comes from the IP version nibble at the network header,
        # so non-IP skbs such as netlink messages can show made-up addresses.)
        if ev["proto"] == "0x0800":
            check(IPV4_RE.match(ev["t"]["saddr"]) and IPV4_RE.match(ev["t"]["daddr"]),
                  f"TUPLE of {where}", "IPv4 addresses when PROTO is 0x0800", ev["tuple"], run)
        if ev["proto"] == "0x86dd":
            check(ev["t"]["saddr"].startswith("[") and ev["t"]["daddr"].startswith("["),
                  f"TUPLE of {where}", "[IPv6] addresses when PROTO is 0x86dd", ev["tuple"], run)
        events.append(ev)
    return events


def center(s, width):
    if len(s) >= width:
        return s
    left = (width - len(s)) // 2
    return " " * left + s + " " * (width - len(s) - left)


def parse_json_lines(text, run):
    """Parses pwru --output-json: one object per line, pwru's keys in pwru's order."""
    events = []
    for i, line in enumerate(text.splitlines(), start=1):
        where = f"JSON line {i}: {line}"
        try:
            pairs = json.loads(line, object_pairs_hook=lambda p: p)
        except json.JSONDecodeError as e:
            raise Failure(f"JSON syntax of line {i}", "one JSON object per line", f"{e}: {line!r}", run)
        check(isinstance(pairs, list), where, "a JSON object", type(pairs).__name__, run)
        keys = [k for k, _ in pairs]
        check(len(set(keys)) == len(keys) and all(k in JSON_KEYS for k in keys)
              and keys == sorted(keys, key=JSON_KEYS.index),
              f"keys of {where}", f"distinct keys from {JSON_KEYS} in that order", keys, run)
        ev = dict(pairs)
        for k in ("skb", "process", "func"):
            check(k in ev, f"keys of {where}", f"'{k}' always present", keys, run)

        def typed(key, kind, pattern=None, obj=ev, ctx=where):
            if key not in obj:
                return
            v = obj[key]
            if kind is int:
                check(type(v) is int and v > 0, f"'{key}' of {ctx}",
                      "a positive integer (zero values are omitted)", repr(v), run)
            else:
                check(type(v) is str and (pattern is None or re.fullmatch(pattern, v)), f"'{key}' of {ctx}",
                      f"a string matching {pattern}", repr(v), run)

        typed("skb", str, r"0x[0-9a-f]+")
        typed("process", str, r".+:\d+")
        typed("func", str, FUNC_RE.pattern[1:-1])
        typed("iface", str, r"0|[^\s:]+:\d+|~\S+")
        for k in ("cpu", "netns", "mark", "proto", "mtu", "len"):
            typed(k, int)
        if getattr(run, "timestamps", False):
            typed("time", int)
        else:
            check("time" not in ev, f"keys of {where}", "no 'time' without --timestamp", keys, run)
        check("tuple" in ev, f"keys of {where}", "'tuple' (--output-tuple is on by default)", keys, run)
        tpairs = [(k, v) for k, v in ev["tuple"]] if isinstance(ev["tuple"], list) else None
        check(tpairs is not None, f"'tuple' of {where}", "a JSON object", repr(ev["tuple"]), run)
        tkeys = [k for k, _ in tpairs]
        check(all(k in JSON_TUPLE_KEYS for k in tkeys) and tkeys == sorted(tkeys, key=JSON_TUPLE_KEYS.index),
              f"tuple keys of {where}", f"keys from {JSON_TUPLE_KEYS} in that order", tkeys, run)
        t = dict(tpairs)
        ev["tuple"] = t
        typed("saddr", str, r"\d+\.\d+\.\d+\.\d+|\[[0-9a-f:.]+\]", t, where)
        typed("daddr", str, r"\d+\.\d+\.\d+\.\d+|\[[0-9a-f:.]+\]", t, where)
        for k in ("sport", "dport", "proto"):
            typed(k, int, obj=t, ctx=where)
        if ev.get("proto") == 0x0800:
            check(IPV4_RE.match(t.get("saddr", "")) and IPV4_RE.match(t.get("daddr", "")),
                  f"tuple of {where}", "IPv4 addresses when proto is 2048", t, run)
        if ev.get("proto") == 0x86DD:
            check(t.get("saddr", "").startswith("[") and t.get("daddr", "").startswith("["),
                  f"tuple of {where}", "[IPv6] addresses when proto is 34525", t, run)
        if "tunnel_tuple" in ev:
            tt = [(k, v) for k, v in ev["tunnel_tuple"]] if isinstance(ev["tunnel_tuple"], list) else None
            check(tt is not None and all(k in JSON_TUPLE_KEYS for k, _ in tt), f"'tunnel_tuple' of {where}",
                  f"a JSON object with keys from {JSON_TUPLE_KEYS}", repr(ev["tunnel_tuple"]), run)
            ev["tunnel_tuple"] = dict(tt)
        ev["line"] = line
        events.append(ev)
    return events


# ---------------------------------------------------------------------------
# Scenarios


class Context:
    def __init__(self, pwru, workdir):
        self.pwru = pwru
        self.workdir = workdir
        self.runs = []
        self.topo = None
        self.topo_procs = []

    def topology(self):
        self.topo = Topology(self.workdir)
        self.topo_procs = self.topo.procs
        self.topo.setup()
        return self.topo


def check_common_text(run, events, topo, inode, ifaces, mtu=1500):
    ours = {topo.ip_a, topo.ip_b}
    for ev in events:
        where = f"line {ev['line']!r}"
        if ev["t"]["saddr"] in ours or ev["t"]["daddr"] in ours:
            check(ev["proto"] == "0x0800", f"PROTO of {where}", "0x0800 for the test's IPv4 traffic",
                  ev["proto"], run)
        check(ev["netns"] == inode, f"NETNS of {where} (--filter-netns)", inode, ev["netns"], run)
        check(ev["iface"] in ifaces, f"IFACE of {where}", f"one of {sorted(ifaces)}", ev["iface"], run)
        check(ev["cpu"] < (os.cpu_count() or 1024), f"CPU of {where}", f"< {os.cpu_count()}", ev["cpu"], run)
        check(ev["mtu"] == (mtu if ev["iface"] != "0" else 0), f"MTU of {where}",
              f"{mtu} with a device, 0 without", ev["mtu"], run)
    check(run.events_received() == len(events), "'events received' count on stderr",
          f"{len(events)} (the number of event lines printed)", run.events_received(), run)


def scenario_text(ctx):
    topo = ctx.topology()
    run = PwruRun(ctx, ["--filter-netns", topo.path_a]).start().wait_ready()
    ping_pid = topo.ping()
    time.sleep(0.5)  # let the ring buffer be read before stopping
    run.stop()
    events = parse_text(run.stdout(), run)
    check(events, "event lines", "at least the ping traffic", "none", run)
    check_common_text(run, events, topo, topo.inode_a, {"0", topo.iface_a()})

    req = f"{topo.ip_a}:0->{topo.ip_b}:0(icmp)"
    rep = f"{topo.ip_b}:0->{topo.ip_a}:0(icmp)"
    icmp = [e for e in events if e["t"]["l4"] == "icmp"]
    for ev in icmp:
        check(ev["tuple"] in (req, rep), f"ICMP TUPLE of line {ev['line']!r}", f"{req} or {rep}", ev["tuple"], run)
        check(ev["mark"] == "0", f"MARK/x of line {ev['line']!r}", "0", ev["mark"], run)
        check(ev["proto"] == "0x0800", f"PROTO of line {ev['line']!r}", "0x0800", ev["proto"], run)
    tx = [e for e in icmp if e["func"] in TX_HOOKS and e["tuple"] == req]
    rx = [e for e in icmp if e["func"] in RX_HOOKS and e["tuple"] == rep]
    check(sum(e["func"] == "net_dev_queue" for e in tx) >= 3,
          "transmit-path hooks for the 3 echo requests", f"3+ net_dev_queue lines with {req}",
          sorted({e["func"] for e in icmp}), run)
    check(len(rx) >= 3,
          "receive-path hooks for the 3 echo replies", f"3+ lines of {sorted(RX_HOOKS)} with {rep}",
          sorted({e["func"] for e in icmp}), run)
    for ev in tx:
        check(ev["iface"] == topo.iface_a(), f"IFACE of transmit line {ev['line']!r}", topo.iface_a(),
              ev["iface"], run)
    # pwru's PROCESS: /proc/PID/exe and the PID, the last 16 characters with
    # '~' first; "ping:PID" (the comm; pwru prints "<empty>") once ping has exited (/proc is read at print time).
    exe = f"{os.path.realpath(shutil.which('ping'))}:{ping_pid}"
    exe = exe if len(exe) <= 16 else "~" + exe[-15:]
    gone = f"ping:{ping_pid}"
    queued = [e for e in tx if e["func"] == "net_dev_queue"]
    for ev in queued:
        check(ev["len"] == 98, f"LEN of {ev['line']!r}", "98 (14 eth + 20 ip + 8 icmp + 56 data)", ev["len"], run)
        check(ev["process"] in (exe, gone), f"PROCESS of {ev['line']!r}", f"{exe} (or {gone})", ev["process"], run)
    check(any(e["process"] == exe for e in queued), "PROCESS of the echo requests",
          f"{exe} on at least one, printed while ping ran", [e["process"] for e in queued], run)
    for ev in rx:
        check(ev["iface"] == topo.iface_a(), f"IFACE of receive line {ev['line']!r}", topo.iface_a(),
              ev["iface"], run)

    # --filter-ifname lo (in ns-a): ns-a's own address goes over lo, ns-b's over the veth.
    run = PwruRun(ctx, ["--filter-netns", topo.path_a, "--filter-ifname", "lo"]).start().wait_ready()
    topo.ping(count=1)
    topo.ping(target=topo.ip_a, count=1)
    time.sleep(0.5)
    run.stop()
    events = parse_text(run.stdout(), run)
    check_common_text(run, events, topo, topo.inode_a, {"lo:1"}, mtu=65536)
    own = f"{topo.ip_a}:0->{topo.ip_a}:0(icmp)"
    check(any(e["tuple"] == own and e["func"] == "net_dev_queue" for e in events),
          "ping of ns-a's own address with --filter-ifname lo", f"a net_dev_queue line with {own}",
          [e["line"] for e in events], run)
    check(not any(topo.ip_b in e["tuple"] for e in events), "ns-b traffic with --filter-ifname lo",
          "no lines (it uses the veth)", [e["line"] for e in events if topo.ip_b in e["tuple"]], run)


def json_events_in_netns(run, topo, inode, iface):
    """pwru's JSON lines, each checked to be in netns `inode` on `iface` (or no device)."""
    events = parse_json_lines(run.stdout(), run)
    check(run.events_received() == len(events), "'events received' count on stderr", len(events),
          run.events_received(), run)
    for ev in events:
        check(ev.get("netns") == inode, f"netns of {ev['line']}", inode, ev.get("netns"), run)
        if {ev["tuple"].get("saddr"), ev["tuple"].get("daddr")} & {topo.ip_a, topo.ip_b}:
            check(ev.get("proto") == 2048, f"proto of {ev['line']}", "2048 for the test's IPv4 traffic",
                  ev.get("proto"), run)
        check(ev.get("iface") in ("0", iface), f"iface of {ev['line']}", f"'0' or '{iface}'", ev.get("iface"), run)
    return events


def scenario_json(ctx):
    topo = ctx.topology()
    # 1. ICMP, netns named by path.
    run = PwruRun(ctx, ["--output-json", "--filter-netns", topo.path_a]).start().wait_ready()
    topo.ping()
    time.sleep(0.5)
    run.stop()
    events = json_events_in_netns(run, topo, topo.inode_a, topo.iface_a())
    icmp = [e for e in events if e["tuple"].get("proto") == 1]
    for ev in icmp:
        pair = (ev["tuple"].get("saddr"), ev["tuple"].get("daddr"))
        check(pair in ((topo.ip_a, topo.ip_b), (topo.ip_b, topo.ip_a)) and "sport" not in ev["tuple"]
              and "dport" not in ev["tuple"] and ev.get("proto") == 2048 and "mark" not in ev,
              f"ICMP line {ev['line']}", f"saddr/daddr {topo.ip_a}<->{topo.ip_b}, no ports, proto 2048, no mark",
              ev, run)
    funcs = {e["func"] for e in icmp}
    check(funcs & TX_HOOKS and funcs & RX_HOOKS, "ICMP hooks", f"one of {sorted(TX_HOOKS)} and one of "
          f"{sorted(RX_HOOKS)}", sorted(funcs), run)
    req_q = [e for e in icmp if e["func"] == "net_dev_queue" and e["tuple"]["saddr"] == topo.ip_a]
    check(len(req_q) >= 3 and all(e.get("len") == 98 and e.get("mtu") == 1500 and e.get("iface") == topo.iface_a()
                                  for e in req_q),
          "net_dev_queue of the echo requests", f"3+ lines with len 98, mtu 1500, iface {topo.iface_a()}",
          [e["line"] for e in req_q], run)

    # 2. UDP to a closed port in ns-b: dropped there with NO_SOCKET. Netns by inode, with timestamps.
    port = 40000 + os.getpid() % 20000
    run = PwruRun(ctx, ["--output-json", "--timestamp", "current", "--filter-netns",
                        f"inode:{topo.inode_b}"]).start().wait_ready()
    run.timestamps = True
    topo.udp_to_closed_port(port)
    time.sleep(0.5)
    run.stop(signal.SIGTERM)
    events = json_events_in_netns(run, topo, topo.inode_b, topo.iface_b())
    for ev in events:
        check(type(ev.get("time")) is int, f"time of {ev['line']}", "an integer (--timestamp current)",
              ev.get("time"), run)
    want = {"saddr": topo.ip_a, "daddr": topo.ip_b, "dport": port, "proto": 17}
    drops = [e for e in events if e["func"] == NO_SOCKET
             and all(e["tuple"].get(k) == v for k, v in want.items())]
    check(drops, "drop of the UDP datagram to a closed port", f"a line with func {NO_SOCKET} and tuple {want}",
          [e["line"] for e in events if e["func"].startswith(DROP_FUNC)] or f"no {DROP_FUNC} lines", run)
    check(type(drops[0]["tuple"].get("sport")) is int, "sport of the dropped datagram", "an integer",
          drops[0]["line"], run)


def scenario_limit_file(ctx):
    topo = ctx.topology()
    for fmt in ("text", "json"):
        out_file = os.path.join(ctx.workdir, f"limit.{fmt}")
        args = ["--output-limit-lines", "5", "--output-file", out_file, "--filter-netns", topo.path_a]
        if fmt == "json":
            args.insert(0, "--output-json")
        run = PwruRun(ctx, args)
        run.extra_files = [out_file]
        run.start().wait_ready()
        topo.ping()
        rc = run.wait_exit(what="pwru exit by itself after --output-limit-lines 5")
        check(rc == 0, "pwru exit status after the line limit", 0, rc, run)
        check(os.path.exists(out_file), "--output-file", f"{out_file} exists", "missing", run)
        with open(out_file, "rb") as f:
            content = f.read().decode(errors="replace")
        check(content.endswith("\n"), f"{out_file} ends with a newline", "yes", repr(content[-40:]), run)
        if fmt == "text":
            events = parse_text(content, run)
        else:
            events = parse_json_lines(content, run)
        check(len(events) == 5, f"event lines in {out_file} ({fmt})", 5, len(events), run)
        check(run.stdout() == "", "stdout with --output-file", "empty", repr(run.stdout()[:200]), run)
        check(run.events_received() == 5, "'events received' on stderr", 5, run.events_received(), run)


def scenario_bad_usage(ctx):
    topo = ctx.topology()
    # pwru's exit statuses: 2 where its flag parser (pflag) refuses the
    # command line, 1 where pwru refuses it as it starts (log.Fatalf).
    cases = [
        (["--no-such-flag"], 2),
        (["--filter-mark", "0x2a/0x0f"], 2),
        (["--filter-mark", "banana"], 2),
        (["--output-limit-lines", "-1"], 2),
        (["--timestamp", "yesterday"], 2),
        (["--ring-buffer-size", "1000"], 2),
        (["--filter-netns", "/nonexistent"], 1),
        (["tcp", "and", "prot", "80"], 1),
        (["--backend", "fentry"], 1),
        (["--filter-ifname", "nosuchif0"], 1),
        (["--filter-ifname", "nosuchif0", "--filter-netns", topo.path_a], 1),
        (["--filter-netns", "inode:abc"], 1),
        # Tracking by stack needs kprobes; this host's auto backend falls
        # back to tracepoints, which must be said, not ignored.
        (["--filter-non-skb-funcs", "fib_table_lookup"], 1),
        # RE2, whole names, on every backend (pwru's rule): a pattern
        # naming no skb function is refused, even a catastrophic one.
        (["--filter-func", "^ip_"], 1),
        (["--filter-func", "(a+)+$"], 1),
        # A module without BTF stops pwru (as pwru's "failed to open
        # /sys/kernel/btf/..."), on the tracepoint backend too.
        (["--kmods", "pwru_e2e_no_such_module"], 1),
    ]
    for args, want in cases:
        run = PwruRun(ctx, args).start()
        rc = run.wait_exit(timeout=CMD_TIMEOUT, what=f"pwru {' '.join(args)} exit")
        err = run.stderr()
        check(rc == want, f"exit status of pwru {' '.join(args)}", want, rc, run)
        check("pwru:" in err, f"stderr of pwru {' '.join(args)}", "a message containing 'pwru:'", err, run)
        check(not os.path.exists(run.ready_file), f"ready file of pwru {' '.join(args)}", "never created",
              "created", run)
        # A refused backend may say what it tried to attach; the hooks never are.
        check(not re.search(r"^pwru: (attaching|attached)", err, re.M), f"stderr of pwru {' '.join(args)}",
              "no attach messages", err, run)
        check(run.stdout() == "", f"stdout of pwru {' '.join(args)}", "empty", run.stdout(), run)
    # A pcap expression libpcap rejects: its own message, with the expression.
    run = PwruRun(ctx, ["tcp", "and", "prot", "80"]).start()
    run.wait_exit(timeout=CMD_TIMEOUT)
    check("syntax error" in run.stderr() and "'tcp and prot 80'" in run.stderr(), "libpcap's message",
          "the expression and libpcap's 'syntax error'", run.stderr(), run)
    run = PwruRun(ctx, ["--filter-func", "^ip_"]).start()
    run.wait_exit(timeout=CMD_TIMEOUT)
    check("Cannot find a matching kernel function: --filter-func '^ip_'" in run.stderr(), "--filter-func '^ip_'",
          "pwru's 'Cannot find a matching kernel function', then the pattern", run.stderr(), run)
    run = PwruRun(ctx, ["--kmods", "pwru_e2e_no_such_module"]).start()
    run.wait_exit(timeout=CMD_TIMEOUT)
    check("--kmods pwru_e2e_no_such_module: no BTF for this module" in run.stderr(), "a missing --kmods module",
          "a message naming the module", run.stderr(), run)
    # Controls: the usage path itself works; pflag prints the usage on stderr.
    run = PwruRun(ctx, ["--help"], ready=False).start()
    check(run.wait_exit(timeout=CMD_TIMEOUT) == 0 and "--filter-netns" in run.stderr() and run.stdout() == "",
          "pwru --help", "exit 0, the flag list on stderr, nothing on stdout", f"exit {run.rc}", run)


def scenario_cli_parity(ctx):
    """The command line as cilium/pwru v1.0.9 reads it, where it takes the
    installed program to see: --output-file comes to exist only once the
    trace is attached (a failed start creates none and truncates none), a
    list flag takes one word, '--flag=' is an empty value, --version.
    --output-pcap (ours) is created once attached too."""
    topo = ctx.topology()
    earlier = "an earlier trace\n"
    kept = os.path.join(ctx.workdir, "kept.txt")
    # Each start fails at another stage: resolving the netns, loading a
    # module's BTF, planning --filter-func against the kernel's functions.
    for i, failing in enumerate((["--filter-netns", "/nonexistent"], ["--kmods", "pwru_e2e_no_such_module"],
                                 ["--filter-func", "^ip_"])):
        fresh = os.path.join(ctx.workdir, f"fresh-{i}.txt")
        with open(kept, "w") as f:
            f.write(earlier)
        fresh_pcap = os.path.join(ctx.workdir, f"fresh-{i}.pcap")
        kept_pcap = os.path.join(ctx.workdir, "kept.pcap")
        with open(kept_pcap, "w") as f:
            f.write(earlier)
        # --output-pcap (ours) follows the same rule.
        for out_file, pcap_file in ((fresh, fresh_pcap), (kept, kept_pcap)):
            run = PwruRun(ctx, ["--output-file", out_file, "--output-pcap", pcap_file] + failing)
            run.extra_files = [out_file]
            rc = run.start().wait_exit(timeout=CMD_TIMEOUT, what=f"pwru {run.cmdline()} exit")
            check(rc == 1, f"exit status of pwru {run.cmdline()}", 1, rc, run)
        for flag, new, old_file in (("--output-file", fresh, kept), ("--output-pcap", fresh_pcap, kept_pcap)):
            check(not os.path.exists(new), f"{flag} of a failed start ({' '.join(failing)})", "not created",
                  "created", run)
            with open(old_file) as f:
                content = f.read()
            check(content == earlier, f"an existing {flag} after a failed start ({' '.join(failing)})",
                  repr(earlier), repr(content[:200]), run)

    # --kmods= names no module, --backend= is auto-detection, --filter-mark 0
    # is no mark filter; the word after them all is the pcap expression.
    run = PwruRun(ctx, ["--kmods=", "--backend=", "--filter-mark", "0", "--output-json", "--output-file", kept,
                        "--filter-netns", topo.path_a, "icmp"])
    run.extra_files = [kept]
    run.start().wait_ready()
    with open(kept) as f:
        content = f.read()
    check(content == "", "--output-file once attached (JSON: no header)", "created anew, empty",
          repr(content[:200]), run)
    topo.ping(count=2)
    topo.udp_to_closed_port(9)
    time.sleep(0.5)
    run.stop()
    with open(kept) as f:
        events = parse_json_lines(f.read(), run)
    check(events and all(e["tuple"].get("proto") == 1 for e in events), "events of 'icmp' after the empty flags",
          "ICMP events only (the UDP datagram and its drop filtered out)",
          [e["line"] for e in events if e["tuple"].get("proto") != 1][:5] or "no events", run)

    run = PwruRun(ctx, ["--version"], ready=False).start()
    rc = run.wait_exit(timeout=CMD_TIMEOUT)
    check(rc == 0 and re.fullmatch(r"pwru v\d+\.\d+\.\d+\S*\n", run.stdout()) and run.stderr() == "",
          "pwru --version", "exit 0 and 'pwru vX.Y.Z' on stdout, as pwru's 'pwru v1.0.9'",
          f"exit {rc}: {run.stdout()!r} {run.stderr()!r}", run)


def scenario_tcp_mark(ctx):
    topo = ctx.topology()
    port = 20000 + os.getpid() % 20000
    rules = (f"table inet pwe_e2e {{\n chain out {{\n  type route hook output priority mangle; policy accept;\n"
             f"  ip daddr {topo.ip_b} tcp dport {port} counter meta mark set 0x2a\n }}\n}}\n")
    sh(topo.exec_args(topo.ns_a, "nft", "-f", "-"), input_bytes=rules.encode())

    def packets_marked():
        _, out, _ = sh(topo.exec_args(topo.ns_a, "nft", "list", "chain", "inet", "pwe_e2e", "out"))
        m = re.search(r"counter packets (\d+)", out)
        return int(m.group(1)) if m else -1

    def tcp_lines(events):
        return [e for e in events if e["t"]["l4"] == "tcp"]

    # 1. --filter-mark 0x2a: only the marked TCP packets of ns-a.
    run = PwruRun(ctx, ["--filter-mark", "0x2a", "--filter-netns", topo.path_a]).start().wait_ready()
    before = packets_marked()
    topo.tcp_connect(port)
    marked = packets_marked() - before
    check(marked >= 3, "nft mark rule matched the connection", "3+ packets (SYN, ACK, data, FIN)", marked, run)
    time.sleep(0.5)
    run.stop()
    events = parse_text(run.stdout(), run)
    check_common_text(run, events, topo, topo.inode_a, {"0", topo.iface_a()})
    for ev in events:
        check(ev["mark"] == "2a", f"MARK/x of line {ev['line']!r} (--filter-mark 0x2a)", "2a", ev["mark"], run)
        m = ev["t"]
        check(m["l4"] == "tcp" and m["saddr"] == topo.ip_a and m["daddr"] == topo.ip_b
              and m["dport"] == str(port) and m["sport"] != "0",
              f"TUPLE of line {ev['line']!r}", f"{topo.ip_a}:<port>->{topo.ip_b}:{port}(tcp)", ev["tuple"], run)
    tx = [e for e in tcp_lines(events) if e["func"] == "net_dev_queue"]
    check(len(tx) >= 3, "marked TCP packets leaving ns-a", f"3+ net_dev_queue lines to port {port} "
          f"(nft marked {marked})", len(tx), run)

    # 2. Same traffic, mark 0x2a given as mark/mask, JSON: "mark":42 on every line.
    run = PwruRun(ctx, ["--output-json", "--filter-mark", "0x2a/0xff", "--filter-netns", topo.path_a])
    run.start().wait_ready()
    topo.tcp_connect(port)
    time.sleep(0.5)
    run.stop()
    events = parse_json_lines(run.stdout(), run)
    check(events, "JSON lines with --filter-mark 0x2a/0xff", "the marked TCP packets", "none", run)
    check(run.events_received() == len(events), "'events received' count on stderr", len(events),
          run.events_received(), run)
    for ev in events:
        check(ev.get("mark") == 42 and ev["tuple"].get("proto") == 6 and ev["tuple"].get("dport") == port,
              f"line {ev['line']}", f"mark 42 and a TCP tuple to port {port}", ev, run)

    # 3. --filter-mark 0x2b: nothing of that traffic (nothing at all in ns-a carries 0x2b).
    run = PwruRun(ctx, ["--filter-mark", "0x2b", "--filter-netns", topo.path_a]).start().wait_ready()
    before = packets_marked()
    topo.tcp_connect(port)
    check(packets_marked() - before >= 3, "nft mark rule matched the second connection", "3+ packets",
          packets_marked() - before, run)
    time.sleep(0.5)
    run.stop()
    events = parse_text(run.stdout(), run)
    check(not tcp_lines(events) and all(e["mark"] == "2b" for e in events),
          "lines with --filter-mark 0x2b", "no TCP lines (the traffic carries mark 0x2a)",
          [e["line"] for e in events], run)
    check(run.events_received() == len(events), "'events received' count on stderr", len(events),
          run.events_received(), run)


# ---------------------------------------------------------------------------


def scenario_pcap(ctx):
    """pwru --output-tuple 'icmp and host B' on the whole host while ICMP, UDP and TCP flow."""
    topo = ctx.topology()
    expression = f"icmp and host {topo.ip_b}"
    run = PwruRun(ctx, ["--output-tuple", expression]).start().wait_ready()
    topo.ping(count=3)
    topo.udp_to_closed_port(40000 + os.getpid() % 20000)
    topo.tcp_connect(20000 + os.getpid() % 20000)
    time.sleep(0.5)
    run.stop()
    events = parse_text(run.stdout(), run)
    req = f"{topo.ip_a}:0->{topo.ip_b}:0(icmp)"
    rep = f"{topo.ip_b}:0->{topo.ip_a}:0(icmp)"
    for ev in events:
        # The UDP datagram's ICMP port-unreachable is ICMP too, and involves B.
        t = ev["t"]
        check(t["l4"] == "icmp" and topo.ip_b in (t["saddr"], t["daddr"]),
              f"line {ev['line']!r} under '{expression}'", f"ICMP to or from {topo.ip_b}", ev["tuple"], run)
    check(sum(e["tuple"] == req for e in events) >= 3, "echo requests printed", f"3+ lines with {req}",
          len(events), run)
    check(sum(e["tuple"] == rep for e in events) >= 3, "echo replies printed", f"3+ lines with {rep}",
          len(events), run)


def scenario_track_skb(ctx):
    """--filter-track-skb keeps reporting an skb after DNAT changed the port the filter matched."""
    topo = ctx.topology()
    # In B, UDP to 7777 is rewritten to 8888, where nothing listens: the
    # NO_SOCKET drop happens after the rewrite, with port 8888.
    sh(topo.exec_args(topo.ns_b, "nft", "-f", "-"), input_bytes=(
        "table ip pwru_track {\n chain pre {\n  type nat hook prerouting priority -100; policy accept;\n"
        "  udp dport 7777 dnat to :8888\n }\n}\n").encode())
    expression = f"udp and dst port 7777 and host {topo.ip_b}"
    results = {}
    for track in (False, True):
        args = ["--output-json", "--filter-netns", f"inode:{topo.inode_b}", expression]
        if track:
            args.insert(0, "--filter-track-skb")
        run = PwruRun(ctx, args).start().wait_ready()
        sh(topo.exec_args(topo.ns_a, "nc", "-u", "-w0", topo.ip_b, "7777"), input_bytes=b"track me\n")
        time.sleep(0.5)
        run.stop()
        results[track] = (parse_json_lines(run.stdout(), run), run)
    plain, plain_run = results[False]
    tracked, tracked_run = results[True]
    rewritten = lambda evs: [e for e in evs if e.get("tuple", {}).get("dport") == 8888]
    check(plain and not rewritten(plain), "events without --filter-track-skb",
          "only the skb before DNAT (dport 7777)", [e.get("func") for e in plain], plain_run)
    drops = [e for e in rewritten(tracked) if e["func"].startswith(f"{DROP_FUNC}(")]
    check(drops and "NO_SOCKET" in drops[0]["func"], "events with --filter-track-skb",
          "the same skb after DNAT (dport 8888), dropped with NO_SOCKET", [(e["func"], e.get("tuple")) for e in tracked],
          tracked_run)
    check(len({e["skb"] for e in tracked}) == 1, "skbs reported with --filter-track-skb", "the one datagram's",
          {e["skb"] for e in tracked}, tracked_run)


def scenario_summary(ctx):
    """--summary over three flows into ns-b: TCP data delivered to nc, UDP
    dropped by a netfilter rule, UDP to a closed port; the fate, reason and
    hint of each, in JSON and in text."""
    topo = ctx.topology()
    base = 30000 + os.getpid() % 10000
    delivered, filtered, closed = base, base + 1, base + 2
    sh(topo.exec_args(topo.ns_b, "nft", "-f", "-"), input_bytes=(
        "table ip pwru_summary {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
        f"  udp dport {filtered} drop\n }}\n}}\n").encode())
    expression = f"host {topo.ip_b} and (port {delivered} or port {filtered} or port {closed})"
    run = PwruRun(ctx, ["--summary", "--output-json", "--filter-netns", f"inode:{topo.inode_b}",
                        expression]).start().wait_ready()
    topo.tcp_connect(delivered)
    sh(topo.exec_args(topo.ns_a, "nc", "-n", "-u", "-w0", topo.ip_b, str(filtered)), input_bytes=b"filtered\n")
    topo.udp_to_closed_port(closed)
    time.sleep(0.5)
    run.stop()
    journeys = []
    for line in run.stdout().splitlines():
        obj = json.loads(line)
        if "journey" in obj:
            journeys.append(obj["journey"])
    check(journeys, "--summary --output-json", "journey lines after the events", run.stdout()[-500:], run)
    by_port = lambda port: [j for j in journeys if j["tuple"].get("dport") == port]
    seen = [(j["tuple"].get("dport"), j["fate"], j["where"]) for j in journeys]

    tcp_read = [j for j in by_port(delivered) if j["fate"] == "delivered" and j["where"].startswith("read by nc:")]
    check(tcp_read, f"the TCP data segment to port {delivered}", "delivered, read by nc", seen, run)
    check(tcp_read[0]["netns"] == topo.inode_b and tcp_read[0]["hooks"][0]["rel_ns"] == 0
          and all(a["rel_ns"] <= b["rel_ns"] for a, b in zip(tcp_read[0]["hooks"], tcp_read[0]["hooks"][1:])),
          "the delivered journey", "in ns-b, hooks in time order from +0", tcp_read[0], run)

    nf = [j for j in by_port(filtered) if j["fate"] == "dropped"]
    # The kernel's drop location: nf_hook_slow, or nft_do_chain where nftables drops itself (6.18).
    check(nf and nf[0]["where"] in ("nf_hook_slow", "nft_do_chain") and nf[0]["reason"].endswith("NETFILTER_DROP"),
          f"UDP to port {filtered} under an nft drop rule", "dropped in netfilter with NETFILTER_DROP", seen, run)
    check("netfilter rule" in nf[0]["hint"] and str(topo.inode_b) in nf[0]["hint"], "the NETFILTER_DROP hint",
          f"the netfilter advice naming netns {topo.inode_b}", nf[0]["hint"], run)

    ns = [j for j in by_port(closed) if j["fate"] == "dropped"]
    check(ns and ns[0]["reason"].endswith("NO_SOCKET") and "udp" in ns[0]["where"],
          f"UDP to closed port {closed}", "dropped in the UDP receive function with NO_SOCKET", seen, run)
    check(ns[0]["hint"].startswith("nothing listens") and ns[0]["netns"] == topo.inode_b, "the NO_SOCKET hint",
          "the listener advice, in ns-b", ns[0], run)

    # Text: the same facts as a block per skb after the events.
    run = PwruRun(ctx, ["--summary", "--filter-netns", f"inode:{topo.inode_b}",
                        f"udp and host {topo.ip_b} and port {filtered}"]).start().wait_ready()
    sh(topo.exec_args(topo.ns_a, "nc", "-n", "-u", "-w0", topo.ip_b, str(filtered)), input_bytes=b"filtered\n")
    time.sleep(0.5)
    run.stop()
    text = run.stdout()
    summary = text[text.find("\nSUMMARY: "):]
    check(re.search(r"^SUMMARY: \d+ skbs?$", summary.strip().splitlines()[0]), "text summary header",
          "'SUMMARY: N skbs' after the event lines", text[-800:], run)
    check(re.search(rf"^SKB 0x[0-9a-f]+ {re.escape(topo.ip_a)}:\d+->{re.escape(topo.ip_b)}:{filtered}\(udp\)$",
                    summary, re.M)
          and re.search(rf"^  fate: dropped in (nf_hook_slow|nft_do_chain) with NETFILTER_DROP \(netns {topo.inode_b}\)$",
                        summary, re.M)
          and re.search(r"^  hint: a netfilter rule dropped it", summary, re.M)
          and re.search(r"^ +\+0\.000ms  \S+", summary, re.M),
          "text summary block", "SKB line, hooks from +0.000ms, fate and hint lines", summary, run)


def scenario_protocols(ctx):
    """IPv6 ping, ARP seen with the filter `arp` on both paths, and the TCP
    flags of a handshake with --output-tcp-flags."""
    topo = ctx.topology()
    n = os.getpid() % 250 + 1
    ip6_a, ip6_b = f"fd00:232:{n:x}::1", f"fd00:232:{n:x}::2"
    for ns, dev, ip in ((topo.ns_a, topo.veth_a, ip6_a), (topo.ns_b, topo.veth_b, ip6_b)):
        sh(["ip", "-n", ns, "addr", "add", f"{ip}/64", "dev", dev, "nodad"])

    run = PwruRun(ctx, ["--output-json", f"icmp6 and host {ip6_b}"]).start().wait_ready()
    sh(topo.exec_args(topo.ns_a, "ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", ip6_b))
    time.sleep(0.5)
    run.stop()
    events = parse_json_lines(run.stdout(), run)
    # pwru writes IPv6 addresses in brackets, in JSON as in text.
    echo = [e for e in events if e["tuple"].get("saddr") == f"[{ip6_a}]" and e["tuple"].get("daddr") == f"[{ip6_b}]"]
    check(len({e["skb"] for e in echo}) >= 2 and all(e["tuple"]["proto"] == 58 and e["proto"] == 0x86DD for e in echo)
          and {"netif_receive_skb", "net_dev_queue"} <= {e["func"] for e in echo},
          "IPv6 echo requests", f"2+ skbs {ip6_a} -> {ip6_b}, ICMPv6, on transmit and receive hooks",
          [(e["func"], e["tuple"]) for e in events][:8], run)

    sh(["ip", "-n", topo.ns_a, "neigh", "flush", "all"])
    sh(["ip", "-n", topo.ns_b, "neigh", "flush", "all"])
    run = PwruRun(ctx, ["--output-json", "--filter-netns", f"inode:{topo.inode_a}", "arp"]).start().wait_ready()
    topo.ping(count=1)
    time.sleep(0.5)
    run.stop()
    events = parse_json_lines(run.stdout(), run)
    check(events and all(e["proto"] == 0x0806 for e in events), "events under the filter `arp`",
          "only ARP frames (ethertype 0x0806)", [(e["func"], e.get("proto")) for e in events][:8], run)
    check({"net_dev_queue", "net_dev_start_xmit"} <= {e["func"] for e in events}
          and {"netif_receive_skb"} <= {e["func"] for e in events}, "ARP in ns-a with `arp`",
          "the request transmitted and the reply received (device hooks, not only the free)",
          sorted({e["func"] for e in events}), run)

    port = 20000 + os.getpid() % 20000
    run = PwruRun(ctx, ["--output-tcp-flags", "--filter-netns", f"inode:{topo.inode_b}",
                        f"tcp and port {port}"]).start().wait_ready()
    topo.tcp_connect(port)
    time.sleep(0.5)
    run.stop()
    events = parse_text(run.stdout(), run)
    flags = [re.search(r"\(tcp:([A-Z|]+)\)", e["tuple"]).group(1) for e in events if "(tcp:" in e["tuple"]]
    first = {f: flags.index(f) for f in ("SYN", "SYN|ACK", "ACK") if f in flags}
    check(len(first) == 3 and first["SYN"] < first["SYN|ACK"] < first["ACK"] and "FIN|ACK" in flags,
          "--output-tcp-flags over a handshake", "SYN, then SYN|ACK, then ACK; FIN|ACK at the close",
          flags[:20], run)


def scenario_skb_outputs(ctx):
    """--output-tunnel over a VXLAN between the namespaces (the outer UDP
    tuple and the inner ICMP one), and --output-skb, --output-skb-shared-info,
    --output-skb-cb: pwru's JSON fields and text columns."""
    topo = ctx.topology()
    n = os.getpid() % 250 + 1
    inner_a, inner_b = f"10.233.{n}.1", f"10.233.{n}.2"
    vni = 1000 + n
    for ns, dev, local, remote, inner in ((topo.ns_a, topo.veth_a, topo.ip_a, topo.ip_b, inner_a),
                                          (topo.ns_b, topo.veth_b, topo.ip_b, topo.ip_a, inner_b)):
        sh(["ip", "-n", ns, "link", "add", "pwruvx", "type", "vxlan", "id", str(vni), "local", local, "remote", remote,
            "dstport", "4789", "dev", dev])
        sh(["ip", "-n", ns, "addr", "add", f"{inner}/24", "dev", "pwruvx"])
        sh(["ip", "-n", ns, "link", "set", "pwruvx", "up"])

    run = PwruRun(ctx, ["--output-json", "--output-tunnel", "--output-skb", "--output-skb-shared-info",
                        "--output-skb-cb", "--filter-netns", f"inode:{topo.inode_a}",
                        f"udp port 4789 and host {topo.ip_b}"]).start().wait_ready()
    topo.ping(target=inner_b, count=2)
    time.sleep(0.5)
    run.stop()
    events = parse_json_lines(run.stdout(), run)
    outer_icmp = [e for e in events if e["tuple"].get("dport") == 4789
                  and e.get("tunnel_tuple", {}).get("saddr") == inner_a
                  and e["tunnel_tuple"].get("daddr") == inner_b and e["tunnel_tuple"].get("proto") == 1]
    check(outer_icmp, "--output-tunnel on the VXLAN traffic",
          f"outer {topo.ip_a} > {topo.ip_b}:4789 with tunnel_tuple {inner_a} > {inner_b} ICMP",
          [(e["func"], e["tuple"], e.get("tunnel_tuple")) for e in events][:6], run)
    for e in events:
        skb, shinfo = e.get("skb_metadata", ""), e.get("skb_shared_info", "")
        check(skb.startswith("\n(struct sk_buff){") and f".len = (unsigned int){e['len']}," in skb,
              f"skb_metadata of a {e['func']} event", "the skb through BTF, with the event's len", skb[:300], run)
        check(shinfo.startswith("\n(struct skb_shared_info){"), f"skb_shared_info of a {e['func']} event",
              "the shared info through BTF", shinfo[:200], run)
        check(isinstance(e.get("cb"), list) and len(e["cb"]) == 5 and all(isinstance(v, int) for v in e["cb"]),
              f"cb of a {e['func']} event", "five numbers (__sk_buff->cb[])", e.get("cb"), run)
    check(not re.search(r"texts lost|evicted", run.stderr() + run.stdout()), "--output-skb texts",
          "none lost or evicted", run.stderr()[-300:], run)

    run = PwruRun(ctx, ["--output-tunnel", "--output-skb-cb", "--filter-netns", f"inode:{topo.inode_a}",
                        f"udp port 4789 and host {topo.ip_b}"]).start().wait_ready()
    topo.ping(target=inner_b, count=1)
    time.sleep(0.5)
    run.stop()
    lines = run.stdout().splitlines()
    check(lines and "__sk_buff->cb[]" in lines[0] and lines[0].rstrip().endswith("FUNC TUNNEL"), "text header",
          "the cb column and TUNNEL last, as pwru", lines[:1], run)
    tunnel = [l for l in lines[1:] if l.rstrip().endswith(f"{inner_a}:0->{inner_b}:0(icmp)")]
    check(tunnel and all(re.search(r" \[0x[0-9A-F]{8}(,0x[0-9A-F]{8}){4}\] ", l) for l in lines[1:]),
          "text lines", "cb as [0x........ x5] and the inner tuple at the end", lines[1:4], run)


def scenario_trace_tc(ctx):
    """--filter-trace-tc/--filter-trace-xdp with a tc and an XDP program on
    ns-b's veth. This build kernel refuses fentry on BPF programs: pwru must
    stop with exit 1 naming the program and the reason. Where fentry works
    (the VM guests run that case), the programs' events must appear."""
    topo = ctx.topology()
    tool = os.environ.get("PWRU_TEST_ATTACH", "")
    check(os.access(tool, os.X_OK), "PWRU_TEST_ATTACH", "the pwru-test-attach binary (set by ctest)", tool)
    holder = subprocess.Popen([tool, topo.path_b, topo.veth_b], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    topo.procs.append(holder)
    line = holder.stdout.readline().decode()
    check(line.strip() == "attached", "pwru-test-attach on ns-b's veth", "attached", line + (holder.stdout.read(300)
                                                                                         .decode() if holder.poll() is not None else ""))
    try:
        run = PwruRun(ctx, ["--output-json", "--filter-trace-tc", "--filter-trace-xdp", f"icmp and host {topo.ip_b}"])
        run.start()
        try:
            run.wait_ready()
        except Failure:
            code = run.wait_exit(what="pwru refusing --filter-trace-tc")
            err = run.stderr()
            check(code == 1 and re.search(r"bpf_prog_[0-9a-f]{16}_pwru_test_(tc\(tc\)|xdp\(xdp\))", err)
                  and "refuse fentry on BPF programs" in err, "--filter-trace-tc where fentry is refused",
                  "exit 1 naming the program and the reason", f"exit {code}: {err[-500:]}", run)
            return
        topo.ping(count=2)
        time.sleep(0.5)
        run.stop()
        funcs = {e["func"] for e in parse_json_lines(run.stdout(), run)}
        check(any(f.endswith("_pwru_test_tc(tc)") for f in funcs) and any(f.endswith("_pwru_test_xdp(xdp)") for f in funcs),
              "--filter-trace-tc/-xdp where fentry works", "events of both programs", sorted(funcs), run)
    finally:
        holder.terminate()
        holder.wait(timeout=10)


def read_nflog_pcap(path):
    """(linktype, [(prefix, payload, caplen, len)]) from a pcap file of NFLOG records."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data, 0)
    check(magic == 0xa1b2c3d4, f"{path}: pcap magic", "0xa1b2c3d4 (microsecond pcap)", hex(magic))
    records, at = [], 24
    while at + 16 <= len(data):
        _, _, caplen, length = struct.unpack_from("<IIII", data, at)
        rec, at = data[at + 16:at + 16 + caplen], at + 16 + caplen
        prefix, payload, off = None, b"", 4
        while off + 4 <= len(rec):
            tlen, ttype = struct.unpack_from("<HH", rec, off)
            value = rec[off + 4:off + tlen]
            if ttype == 10:
                prefix = value.rstrip(b"\0").decode()
            elif ttype == 9:
                payload = value
            off += (tlen + 3) & ~3
        records.append((prefix, payload, caplen, length))
    return linktype, records


def scenario_output_pcap(ctx):
    """--output-pcap: the ICMP packets of a ping between the namespaces, one
    pcap record per event with its hook as the NFLOG prefix; tcpdump reads
    the file back."""
    topo = ctx.topology()
    pcap = os.path.join(ctx.workdir, "trace.pcap")
    run = PwruRun(ctx, ["--output-json", "--output-pcap", pcap, "--filter-netns", f"inode:{topo.inode_b}",
                        f"icmp and host {topo.ip_b}"]).start().wait_ready()
    topo.ping(count=3)
    time.sleep(0.5)
    run.stop()
    events = parse_json_lines(run.stdout(), run)
    linktype, records = read_nflog_pcap(pcap)
    check(linktype == 239, "pcap link type", "239 (NFLOG)", linktype, run)
    check(len(records) == len(events) and events, "pcap records", f"one per event ({len(events)})", len(records), run)
    check(re.search(rf"pwru: {len(events)} packets written to ", run.stderr()), "pwru's count of packets written",
          f"{len(events)} packets written", run.stderr()[-400:], run)
    for ev, (prefix, payload, caplen, length) in zip(events, records):
        check(prefix == ev["func"], "NFLOG prefix of a record", f"the event's hook {ev['func']!r}", prefix, run)
        if not payload:
            continue
        t = ev["tuple"]
        src, dst = socket.inet_ntoa(payload[12:16]), socket.inet_ntoa(payload[16:20])
        check(payload[0] >> 4 == 4 and payload[9] == 1 and (src, dst) == (t["saddr"], t["daddr"]),
              f"payload of the {ev['func']} record", f"ICMP {t['saddr']} > {t['daddr']}", (src, dst, payload[:20].hex()),
              run)
    with_payload = sum(1 for r in records if r[1])
    check(with_payload >= 6, "records with packet bytes", ">= 6 (3 requests and 3 replies)", with_payload, run)
    _, out, _ = sh(["tcpdump", "-r", pcap, "-n"])
    requests = len(re.findall(rf"IP {re.escape(topo.ip_a)} > {re.escape(topo.ip_b)}: ICMP echo request", out))
    replies = len(re.findall(rf"IP {re.escape(topo.ip_b)} > {re.escape(topo.ip_a)}: ICMP echo reply", out))
    check(requests >= 3 and replies >= 3, "tcpdump -r on the pcap file", ">= 3 echo requests and >= 3 replies",
          out[-600:], run)
    # Unwritable path: refused before anything loads.
    p = subprocess.run([ctx.pwru, "--output-pcap", "/nonexistent-dir/x.pcap", "icmp"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    check(p.returncode != 0 and b"--output-pcap /nonexistent-dir/x.pcap: cannot write it" in p.stderr,
          "--output-pcap into a missing directory", "a refusal naming the path", p.stderr.decode()[-300:])


def missing_prerequisites(binary, tools, packages):
    """What stops the scenarios from running at all: each a failure, never a skip."""
    problems = []
    if os.geteuid() != 0:
        problems.append(f"not running as root: {os.path.basename(binary)} loads BPF programs and the tests "
                        "create network namespaces; run ctest as root")
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        problems.append(f"{binary} is not an executable file (did e2e.install run?)")
    for tool in tools:
        if not shutil.which(tool):
            problems.append(f"required tool '{tool}' not found in PATH (packages: {packages}; .ci/setup "
                            "installs them)")
    return problems


def preflight(pwru):
    return missing_prerequisites(pwru, TOOLS, "iproute2, iputils-ping, netcat-openbsd, nftables, tcpdump")


def scenario_main(argv, scenarios, preflight, make_context, show_failure, teardown, deadline=100.0):
    """The runner both e2e scripts share: `argv` is [script, binary, scenario];
    `scenarios` maps names to functions of a context made by
    make_context(binary, workdir). Prints one PASS/FAIL line; returns the exit status."""
    global START, OVERALL_DEADLINE
    START = time.monotonic()
    OVERALL_DEADLINE = deadline
    if len(argv) != 3 or argv[2] not in scenarios:
        print(f"usage: {argv[0]} /path/to/binary {{{','.join(scenarios)}}}", file=sys.stderr)
        return 1
    binary, scenario = os.path.abspath(argv[1]), argv[2]
    label = f"{os.path.basename(binary)}.{scenario}"
    problems = preflight(binary)
    if problems:
        for p in problems:
            print(f"FAIL [{label}]: {p}", file=sys.stderr)
        return 1

    def on_signal(signum, _frame):
        raise Deadline(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workdir = tempfile.mkdtemp(prefix=f"{os.path.basename(binary)}-e2e-{scenario}-")
    ctx = make_context(binary, workdir)
    status = 1
    try:
        summary = scenarios[scenario](ctx)
        status = 0
        print(f"PASS [{label}]" + (f": {summary}" if summary else ""))
    except Failure as f:
        print(f"FAIL [{label}]: {f.what}\n  expected: {f.expected}\n  seen:     {f.seen}", file=sys.stderr)
        show_failure(ctx, f)
    except Deadline as d:
        print(f"FAIL [{label}]: {d}", file=sys.stderr)
        show_failure(ctx, None)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        teardown(ctx)
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def show_pwru_failure(ctx, failure):
    run = (failure.run if failure is not None else None) or (ctx.runs[-1] if ctx.runs else None)
    if run is None:
        return
    if run.proc is not None and run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait(timeout=5)
        run.rc = "killed by the test"
    print(run.dump(), file=sys.stderr)


def teardown_pwru(ctx):
    for run in ctx.runs:
        if run.proc is not None and run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(timeout=5)
    if ctx.topo is not None:
        ctx.topo.teardown()


def with_run_count(scenario):
    def run(ctx):
        scenario(ctx)
        return f"{len(ctx.runs)} pwru run(s)"
    return run


def main(argv):
    scenarios = {name: with_run_count(globals()[f"scenario_{name}"]) for name in SCENARIOS}
    return scenario_main(argv, scenarios, preflight, Context, show_pwru_failure, teardown_pwru)


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main(sys.argv))
