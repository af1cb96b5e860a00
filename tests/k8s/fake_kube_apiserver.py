#!/usr/bin/env python3
"""A fake Kubernetes API server for pwru-agent's tests: TLS, bearer-token
auth, and the real LIST/WATCH protocol for pods (fieldSelector on the node,
paging with limit/continue, chunked watch streams of JSON lines, BOOKMARK
events, 410 Gone for a compacted resourceVersion or on demand mid-stream,
connections dropped on demand, an outage on demand).

Usage: fake_kube_apiserver.py CERT KEY TOKEN_FILE [PORT]
Prints "PORT <n>" once listening on 127.0.0.1 (PORT, or any free port). The token file is re-read for
every request, so a test rotates the token by rewriting it. Test control
(no auth): POST /__control/{add,delete,gone,drop,compact} with a JSON body,
POST /__control/outage {"down": true|false} (while down: open watches are
dropped and every API request gets 503, as an API server behind a failed
load balancer answers),
GET /__control/stats; POST /__control/user {"token","username","groups"} makes
a token that TokenReview accepts, POST /__control/allow {"username","verb",
"resource","subresource","namespace","name"} a rule SubjectAccessReview
grants ("*" or absent matches anything); with "group" instead of "username"
the rule is for every user the review names in that group, as RBAC binds a
Group subject.

Services (issue 20): POST /__control/service {"namespace","name","selector"?:
{k: v},"ports"?,"endpoints"?: [pod name | {"ip"}] (for a selector-less
one)} and /__control/delete_service {"namespace","name"}; GET
/api/v1/namespaces/NS/services/NAME; EndpointSliceLists computed from the
pods (a Service's selector, or its "endpoints"), at most max_per_slice
endpoints a slice (POST /__control/max_per_slice {"max_per_slice": n},
default 100), paged with limit/continue. Label selectors are parsed as the
real server parses them (=, ==, !=, in, notin, key, !key); one it cannot
parse gets a 400 Status. POST /__control/latency {"path_prefix","ms"} delays
every API request under that path ("ms": 0 removes it). POST
/__control/page_cap {"page_cap": n} answers lists in pages of at most n
(with a continue token), as a real server may whatever the limit asked. Pod control bodies
may also set "phase" (Running by default) and "node": "" (not scheduled).
"""

import re

import http.server
import json
import ssl
import sys
import threading
import time
import urllib.parse

LOCK = threading.Condition()
STATE = {"rv": 100, "pods": {}, "log": [], "min_rv": 0, "epoch": 0, "drop_epoch": 0, "down": False, "users": {}, "rules": [],
         "services": {}, "max_per_slice": 100, "latency": {}, "page_cap": 0,
         "stats": {"lists": 0, "watches": 0, "unauthorized": 0, "gone_sent": 0, "token_reviews": 0,
                   "access_reviews": 0, "service_gets": 0, "slice_lists": 0}}


def pod_object(pod, rv):
    """A pod as the API server shows it. Control bodies may add "labels",
    "podIP", "ports" ({name: containerPort}), "owner" ({"kind", "name",
    "controller": true by default, "apiVersion": "apps/v1" by default}: its
    controller, as a DaemonSet or ReplicaSet sets it) and "ready" (true by
    default) to the basics."""
    ports = [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in pod.get("ports", {}).items()]
    metadata = {"uid": pod["uid"], "namespace": pod["namespace"], "name": pod["name"],
                "labels": pod.get("labels", {}), "resourceVersion": str(rv)}
    if pod.get("owner"):
        owner = pod["owner"]
        metadata["ownerReferences"] = [{"apiVersion": owner.get("apiVersion", "apps/v1"), "kind": owner["kind"],
                                        "name": owner["name"], "uid": "uid-owner-" + owner["name"],
                                        "controller": owner.get("controller", True),
                                        "blockOwnerDeletion": True}]
    ready = "True" if pod.get("ready", True) else "False"
    spec = {"hostNetwork": bool(pod.get("hostNetwork")), "containers": [{"name": "main", "ports": ports}]}
    if pod.get("node", "n1"):  # the real server has no nodeName before scheduling
        spec["nodeName"] = pod.get("node", "n1")
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": metadata,
            "spec": spec,
            "status": {"phase": pod.get("phase", "Running"), "podIP": pod.get("podIP", ""),
                       "conditions": [{"type": "Ready", "status": ready}]}}


# apimachinery's label key (optional DNS-subdomain prefix, a name of at most
# 63) and value syntax.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _NAME)
_VALUE = re.compile(r"(" + _NAME + r")?")
_TERM = re.compile(r"\s*(!?)\s*([^\s!=,()]+)(?:\s*(==|=|!=)\s*([^\s,()]*)|\s+(notin|in)\s*\(([^()]*)\))?\s*")


def parse_selector(selector):
    """A label selector as requirements [(op, key, values)], as the API
    server parses it: "a=b", "a==b", "a!=b", "a in (x,y)", "a notin (x)",
    "a", "!a", joined by commas. ValueError for what it would refuse."""
    requirements = []
    pos = 0
    while pos < len(selector) and selector.strip():
        m = _TERM.match(selector, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unable to parse requirement: found '{selector[pos:]}', expected: identifier")
        negate, key, op, value, set_op, values = m.groups()
        if not _KEY.fullmatch(key) or len(key) > 317:
            raise ValueError(f"unable to parse requirement: key: Invalid value: \"{key}\": name part must consist "
                             "of alphanumeric characters, '-', '_' or '.'")
        if negate and (op or set_op):
            raise ValueError(f"unable to parse requirement: found '{op or set_op}', expected: ',' or end of string")
        if op:
            vals = [value]
            op = {"==": "="}.get(op, op)
        elif set_op:
            vals = [v.strip() for v in values.split(",")]
            op = set_op
        else:
            vals, op = [], "!" if negate else "exists"
        for v in vals:
            if not _VALUE.fullmatch(v):
                raise ValueError(f"unable to parse requirement: values[0][{key}]: Invalid value: \"{v}\": a valid "
                                 "label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'")
        requirements.append((op, key, vals))
        pos = m.end()
        if pos < len(selector):
            if selector[pos] != ",":
                raise ValueError(f"unable to parse requirement: found '{selector[pos:]}', expected: ',' or end of "
                                 "string")
            pos += 1
    return requirements


def labels_match(labels, requirements):
    for op, key, values in requirements:
        has = key in labels
        if op == "=" and labels.get(key) != values[0]:
            return False
        if op == "!=" and has and labels[key] == values[0]:
            return False
        if op == "in" and labels.get(key) not in values:
            return False
        if op == "notin" and has and labels[key] in values:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
    return True


def label_selected(pod, selector):
    """A label selector as the API server applies it (see parse_selector)."""
    return labels_match(pod.get("labels", {}), parse_selector(selector))


def service_object(svc):
    spec = {"type": "ClusterIP", "clusterIP": svc.get("clusterIP", "10.96.0.10"),
            "ports": svc.get("ports", [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}])}
    if svc.get("selector"):  # the real server leaves an empty selector out
        spec["selector"] = svc["selector"]
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"namespace": svc["namespace"], "name": svc["name"], "uid": "uid-svc-" + svc["name"],
                         "resourceVersion": str(STATE["rv"])},
            "spec": spec}


def endpoint_slices(namespace, rv):
    """Every EndpointSlice of the namespace, as the endpointslice controller
    (selector) or a mirroring controller (explicit endpoints) keeps them."""
    slices = []
    for svc in sorted(STATE["services"].values(), key=lambda s: s["name"]):
        if svc["namespace"] != namespace:
            continue
        pods = {p["name"]: p for p in STATE["pods"].values() if p["namespace"] == namespace}
        endpoints = []
        if svc.get("selector"):
            wanted = [(p["name"], None) for p in sorted(pods.values(), key=lambda p: p["name"])
                      if p.get("podIP") and labels_match(p.get("labels", {}), [("=", k, [v]) for k, v in
                                                                                svc["selector"].items()])]
        else:
            wanted = [(e, None) if isinstance(e, str) else (None, e["ip"]) for e in svc.get("endpoints", [])]
        for name, ip in wanted:
            if name is None:  # an address with no pod behind it
                endpoints.append({"addresses": [ip], "conditions": {"ready": True, "serving": True,
                                                                     "terminating": False}})
                continue
            pod = pods.get(name, {})
            ready = bool(pod) and pod.get("ready", True)
            endpoint = {"addresses": [pod.get("podIP") or "192.0.2.1"],
                        "conditions": {"ready": ready, "serving": ready, "terminating": False},
                        "targetRef": {"kind": "Pod", "namespace": namespace, "name": name,
                                      "uid": pod.get("uid", "uid-gone-" + name)}}
            if pod.get("node", "n1"):
                endpoint["nodeName"] = pod.get("node", "n1")
            endpoints.append(endpoint)
        per = max(1, STATE["max_per_slice"])
        for i in range(0, max(len(endpoints), 1), per):
            slices.append({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                           "metadata": {"namespace": namespace, "name": f"{svc['name']}-{i // per:05d}",
                                        "resourceVersion": str(rv),
                                        "labels": {"kubernetes.io/service-name": svc["name"],
                                                   "endpointslice.kubernetes.io/managed-by":
                                                       "endpointslice-controller.k8s.io"}},
                           "addressType": "IPv4", "endpoints": endpoints[i:i + per],
                           "ports": [{"name": p.get("name", ""), "port": p.get("targetPort", p.get("port")),
                                      "protocol": p.get("protocol", "TCP")}
                                     for p in service_object(svc)["spec"]["ports"]]})
    return slices


def page(items, q):
    """limit/continue over a sorted list: (this page, the continue token)."""
    limit = int(q.get("limit", ["0"])[0] or 0)
    if STATE["page_cap"]:
        limit = min(limit, STATE["page_cap"]) if limit else STATE["page_cap"]
    start = int(q.get("continue", ["0"])[0] or 0)
    more = limit and start + limit < len(items)
    return (items[start:start + limit] if limit else items[start:]), (str(start + limit) if more else "")


def record(kind, pod):
    STATE["rv"] += 1
    STATE["log"].append((STATE["rv"], kind, pod))
    LOCK.notify_all()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, reason, message):
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
                "code": code}

    def authorized(self):
        path = urllib.parse.urlparse(self.path).path
        with LOCK:
            down = STATE["down"]
            delay = max([ms for prefix, ms in STATE["latency"].items() if path.startswith(prefix)], default=0)
        if delay:
            time.sleep(delay / 1000)
        if down:
            self.send_json(503, self.status(503, "ServiceUnavailable", "the API server is down (test outage)"))
            return False
        with open(TOKEN_FILE) as f:
            token = f.read().strip()
        if self.headers.get("Authorization") == f"Bearer {token}":
            return True
        with LOCK:
            STATE["stats"]["unauthorized"] += 1
        self.send_json(401, self.status(401, "Unauthorized", "Unauthorized"))
        return False

    def token_review(self, review):
        with LOCK:
            STATE["stats"]["token_reviews"] += 1
            user = STATE["users"].get(review.get("spec", {}).get("token"))
        status = ({"authenticated": True, "user": {"username": user["username"], "uid": "uid-" + user["username"],
                                                    "groups": user.get("groups", ["system:authenticated"])}}
                  if user else {"authenticated": False, "error": "invalid bearer token"})
        self.send_json(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})

    def access_review(self, review):
        spec = review.get("spec", {})
        attrs = spec.get("resourceAttributes", {})

        def matches(rule):
            if "group" in rule:
                if rule["group"] not in (spec.get("groups") or []):
                    return False
            elif rule["username"] != spec.get("user"):
                return False
            return all(rule.get(k, "*") in ("*", attrs.get(k, "")) for k in
                       ("verb", "resource", "subresource", "namespace", "name"))

        with LOCK:
            STATE["stats"]["access_reviews"] += 1
            allowed = any(matches(r) for r in STATE["rules"])
        self.send_json(201, {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                             "status": {"allowed": allowed,
                                        "reason": "" if allowed else "no RBAC rule allows it"}})

    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if url.path == "/apis/authentication.k8s.io/v1/tokenreviews":
            return self.authorized() and self.token_review(body)
        if url.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
            return self.authorized() and self.access_review(body)
        with LOCK:
            if url.path == "/__control/user":
                STATE["users"][body["token"]] = body
            elif url.path == "/__control/allow":
                STATE["rules"].append(body)
            elif url.path == "/__control/add":
                STATE["pods"][body["uid"]] = body
                record("ADDED", body)
            elif url.path == "/__control/delete":
                pod = STATE["pods"].pop(body["uid"])
                record("DELETED", pod)
            elif url.path == "/__control/compact":
                STATE["min_rv"] = STATE["rv"] + 1
            elif url.path == "/__control/gone":
                STATE["min_rv"] = STATE["rv"] + 1
                STATE["epoch"] += 1
                LOCK.notify_all()
            elif url.path == "/__control/outage":
                STATE["down"] = bool(body["down"])
                STATE["drop_epoch"] += 1
                LOCK.notify_all()
            elif url.path == "/__control/service":
                STATE["services"][body["namespace"] + "/" + body["name"]] = body
                STATE["rv"] += 1
            elif url.path == "/__control/delete_service":
                STATE["services"].pop(body["namespace"] + "/" + body["name"], None)
                STATE["rv"] += 1
            elif url.path == "/__control/max_per_slice":
                STATE["max_per_slice"] = int(body["max_per_slice"])
            elif url.path == "/__control/page_cap":
                STATE["page_cap"] = int(body["page_cap"])
            elif url.path == "/__control/latency":
                if body.get("ms"):
                    STATE["latency"][body["path_prefix"]] = int(body["ms"])
                else:
                    STATE["latency"].pop(body["path_prefix"], None)
            elif url.path == "/__control/drop":
                STATE["drop_epoch"] += 1
                LOCK.notify_all()
            else:
                return self.send_json(404, {})
        self.send_json(200, {"rv": STATE["rv"]})

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/__control/stats":
            with LOCK:
                return self.send_json(200, STATE["stats"])
        if not self.authorized():
            return
        parts = url.path.split("/")
        q = urllib.parse.parse_qs(url.query)
        # /api/v1/namespaces/NS/services/NAME
        if len(parts) == 7 and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "services":
            with LOCK:
                STATE["stats"]["service_gets"] += 1
                svc = STATE["services"].get(parts[4] + "/" + parts[6])
                found = service_object(svc) if svc else None
            if not found:
                return self.send_json(404, self.status(404, "NotFound", f'services "{parts[6]}" not found'))
            return self.send_json(200, found)
        # /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices
        if len(parts) == 7 and parts[1:5] == ["apis", "discovery.k8s.io", "v1", "namespaces"] \
                and parts[6] == "endpointslices":
            try:
                requirements = parse_selector(q.get("labelSelector", [""])[0])
            except ValueError as e:
                return self.send_json(400, self.status(400, "BadRequest", str(e)))
            with LOCK:
                STATE["stats"]["slice_lists"] += 1
                rv = STATE["rv"]
                slices = [s for s in endpoint_slices(parts[5], rv) if labels_match(s["metadata"]["labels"],
                                                                                   requirements)]
            items, more = page(slices, q)
            return self.send_json(200, {"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                                        "metadata": {"resourceVersion": str(rv), "continue": more},
                                        "items": items})
        # /api/v1/namespaces/NS/pods/NAME: one pod, any node.
        if len(parts) == 7 and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "pods":
            with LOCK:
                found = [p for p in STATE["pods"].values() if p["namespace"] == parts[4] and p["name"] == parts[6]]
                rv = STATE["rv"]
            if not found:
                return self.send_json(404, self.status(404, "NotFound", f'pods "{parts[6]}" not found'))
            return self.send_json(200, pod_object(found[0], rv))
        namespace = None
        if len(parts) == 6 and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "pods":
            namespace = parts[4]
        elif url.path != "/api/v1/pods":
            return self.send_json(404, self.status(404, "NotFound", "not found"))
        labels = q.get("labelSelector", [""])[0]
        selector = q.get("fieldSelector", [""])[0]
        node = selector.split("=", 1)[1] if selector.startswith("spec.nodeName=") else None
        try:
            requirements = parse_selector(labels)
        except ValueError as e:
            return self.send_json(400, self.status(400, "BadRequest", str(e)))
        if q.get("watch", ["0"])[0] in ("1", "true"):
            return self.watch(q, node)
        with LOCK:
            STATE["stats"]["lists"] += 1
            pods = sorted((p for p in STATE["pods"].values()
                           if (node is None or p.get("node", "n1") == node)
                           and labels_match(p.get("labels", {}), requirements)
                           and (namespace is None or p["namespace"] == namespace)),
                          key=lambda p: p["uid"])
            rv = STATE["rv"]
        items, more = page(pods, q)
        self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(rv), "continue": more},
                             "items": [pod_object(p, rv) for p in items]})

    def chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, q, node):
        since = int(q.get("resourceVersion", ["0"])[0] or 0)
        deadline = time.monotonic() + int(q.get("timeoutSeconds", ["300"])[0])
        bookmarks = q.get("allowWatchBookmarks", ["false"])[0] == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with LOCK:
            STATE["stats"]["watches"] += 1
            epoch, drop_epoch = STATE["epoch"], STATE["drop_epoch"]
            too_old = since < STATE["min_rv"]
        if too_old:
            return self.gone(since)
        last_bookmark = time.monotonic()
        while time.monotonic() < deadline:
            with LOCK:
                LOCK.wait(timeout=0.2)
                if STATE["drop_epoch"] != drop_epoch:
                    self.close_connection = True
                    self.connection.shutdown(2)  # no final chunk: a dropped connection
                    return
                if STATE["epoch"] != epoch:
                    return self.gone(since)
                events = [(rv, kind, pod) for rv, kind, pod in STATE["log"] if rv > since]
            for rv, kind, pod in events:
                if node is None or pod.get("node", "n1") == node:
                    self.chunk({"type": kind, "object": pod_object(pod, rv)})
                since = rv
            if bookmarks and time.monotonic() - last_bookmark > 1.0:
                self.chunk({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                           "metadata": {"resourceVersion": str(since)}}})
                last_bookmark = time.monotonic()
        self.wfile.write(b"0\r\n\r\n")

    def gone(self, since):
        with LOCK:
            STATE["stats"]["gone_sent"] += 1
        self.chunk({"type": "ERROR", "object": self.status(
            410, "Expired", f"too old resource version: {since} ({STATE['rv']})")})
        self.wfile.write(b"0\r\n\r\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-stream (a watcher stopping) are normal here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, OSError)):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    cert, key, TOKEN_FILE = sys.argv[1:4]
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    Server.allow_reuse_address = True  # restarted on the same port by tests
    server = Server(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
