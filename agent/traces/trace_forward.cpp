#include "traces/trace_forward.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/error.h"
#include "http/peer_tls.h"

namespace pwru {

namespace {

using json = nlohmann::json;

constexpr int kConnectTimeoutSeconds = 3;
constexpr auto kAnswerTimeout = std::chrono::seconds(30);  // the peer loads its programs before answering
constexpr auto kPoll = std::chrono::milliseconds(100);     // how often a relay looks for its caller hanging up
// Bytes the peer may get ahead of a slow caller before its connection
// stops being read (TCP then slows the peer down).
constexpr std::size_t kMaxBuffered = 4u << 20;
constexpr std::size_t kMaxErrorBody = 64u << 10;
// httplib's servers take header lines up to 8 KiB.
constexpr std::size_t kMaxCallerHeader = 7u << 10;
// A peer whose node vanished sends no FIN: TCP keepalive notices in
// about idle + interval * count seconds, whatever the trace's duration.
constexpr int kKeepIdleSeconds = 15;
constexpr int kKeepIntervalSeconds = 5;
constexpr int kKeepCount = 3;

// Why OpenSSL refused the peer's certificate, recorded in the handshake's
// own thread (the connection's): httplib only says the handshake failed.
thread_local std::string g_verify_failure;

int record_verify_failure(int ok, X509_STORE_CTX* store) {
  if (!ok && g_verify_failure.empty())
    g_verify_failure = X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
  return ok;
}

}  // namespace

std::string encode_caller(const TraceCaller& caller, const std::string& remote) {
  json extra = json::object();
  try {
    extra = json::parse(caller.extra_json);
  } catch (const json::exception&) {
  }
  const json value = {
      {"user", caller.user}, {"uid", caller.uid}, {"groups", caller.groups}, {"extra", extra}, {"remote", remote}};
  // ensure_ascii: names from the API server may be any UTF-8; a header
  // carries them escaped, and no byte of them can end the header line.
  std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
  if (text.size() > kMaxCallerHeader)
    throw RequestError(400, "your Kubernetes identity (" + std::to_string(caller.groups.size()) +
                                " groups) is too large to pass on to another node's agent; ask the agent on the "
                                "pod's node directly (kubectl port-forward to it)");
  return text;
}

RelayedCaller decode_caller(const std::string& header) {
  const auto bad = [](const std::string& what) {
    return RequestError(400, std::string(kCallerHeader) + " from the relaying agent " + what +
                                 "; the agents' versions may differ: upgrade them to the same release");
  };
  if (header.empty()) throw bad("is missing");
  json value;
  try {
    value = json::parse(header);
  } catch (const json::exception&) {
    throw bad("is not JSON");
  }
  if (!value.is_object()) throw bad("is not a JSON object");
  RelayedCaller out;
  const auto string_field = [&](const char* key, std::string& into) {
    if (!value.contains(key)) return;
    if (!value[key].is_string()) throw bad(std::string("has a \"") + key + "\" that is not a string");
    into = value[key].get<std::string>();
  };
  string_field("user", out.caller.user);
  string_field("uid", out.caller.uid);
  string_field("remote", out.remote);
  if (value.contains("groups")) {
    if (!value["groups"].is_array()) throw bad("has \"groups\" that is not a list");
    for (const json& group : value["groups"]) {
      if (!group.is_string()) throw bad("has a group that is not a string");
      out.caller.groups.push_back(group.get<std::string>());
    }
  }
  if (value.contains("extra")) {
    const json& extra = value["extra"];
    if (!extra.is_object()) throw bad("has \"extra\" that is not an object");
    // SubjectAccessReview's extra: lists of strings by key.
    for (const auto& [key, values] : extra.items()) {
      if (!values.is_array()) throw bad("has extra." + key + " that is not a list");
      for (const json& v : values)
        if (!v.is_string()) throw bad("has extra." + key + " with an item that is not a string");
    }
    out.caller.extra_json = extra.dump();
  }
  return out;
}

// The HTTP exchange, on a thread of its own: httplib's send() returns only
// once the response has ended, and a trace's response lasts the trace.
struct PeerTrace::Connection {
  std::unique_ptr<httplib::SSLClient> client;
  std::thread thread;

  std::mutex mutex;
  std::condition_variable changed;
  int status = 0;
  std::string data;        // body bytes not yet taken by relay() or read_body()
  bool done = false;       // send() has returned
  bool clean = false;      // ... with the whole response
  bool cancelled = false;  // we hung up
  std::string failure;     // why send() failed, when it did

  // Ends the exchange from another thread. httplib's stop() shuts the
  // socket down only while a request is in flight, so one that lands
  // between the connect and the request is retried until send() returns.
  void hang_up() {
    std::unique_lock<std::mutex> lock(mutex);
    cancelled = true;
    changed.notify_all();
    while (!done) {
      lock.unlock();
      client->stop();
      lock.lock();
      changed.wait_for(lock, std::chrono::milliseconds(50), [this] { return done; });
    }
  }
};

PeerTrace::PeerTrace(const PeerAgent& peer, const AgentConfig::Traces::PeerTls& tls, std::string body,
                     const std::string& caller_header, const std::string& forwarded_by, std::chrono::seconds quiet_for,
                     Mode mode)
    : where_("the pwru-agent on node " + peer.node + " (" + peer.pod + ", " + peer.host + ":" +
             std::to_string(peer.port) + ")"),
      connection_(std::make_unique<Connection>()) {
  Connection& c = *connection_;
  c.client = std::make_unique<httplib::SSLClient>(peer.host, peer.port);
  // httplib's own check wants the address we dial (a pod IP) in the
  // certificate; OpenSSL checks the release CA and the peer name instead,
  // during the handshake (configure_peer_tls).
  c.client->enable_server_certificate_verification(false);
  SSL_CTX* ctx = c.client->ssl_context();
  if (!ctx) throw RequestError(503, "this agent cannot make a TLS context to relay the request");
  try {
    // Read for every relay: a rotated certificate is used at once.
    configure_peer_tls(*ctx, tls, PeerTlsRole::kClient);
  } catch (const UsageError& e) {
    throw RequestError(503, std::string("this agent cannot relay to other nodes: ") + e.what());
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, record_verify_failure);
  c.client->set_connection_timeout(kConnectTimeoutSeconds, 0);
  c.client->set_read_timeout(quiet_for.count(), 0);
  c.client->set_write_timeout(kConnectTimeoutSeconds * 3, 0);
  c.client->set_socket_options([](int sock) {
    const int yes = 1, idle = kKeepIdleSeconds, interval = kKeepIntervalSeconds, count = kKeepCount;
    setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, &yes, sizeof yes);
    setsockopt(sock, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(sock, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(sock, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  });

  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/traces";
  request.body = std::move(body);
  request.headers = {
      {"Content-Type", "application/json"}, {kCallerHeader, caller_header}, {kForwardedByHeader, forwarded_by}};
  if (mode == Mode::kMerge) request.headers.emplace(kMergeHeader, "1");
  request.response_handler = [&c](const httplib::Response& res) {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.status = res.status;
    c.changed.notify_all();
    return !c.cancelled;
  };
  request.content_receiver = [&c](const char* data, std::size_t size, std::uint64_t, std::uint64_t) {
    std::unique_lock<std::mutex> lock(c.mutex);
    if (c.status != 200 && c.data.size() + size > kMaxErrorBody) return false;
    c.changed.wait(lock, [&c] { return c.cancelled || c.data.size() < kMaxBuffered; });
    if (c.cancelled) return false;
    c.data.append(data, size);
    c.changed.notify_all();
    return true;
  };
  c.thread = std::thread([&c, request = std::move(request)] {
    g_verify_failure.clear();
    const httplib::Result result = c.client->send(request);
    std::lock_guard<std::mutex> lock(c.mutex);
    c.done = true;
    c.clean = static_cast<bool>(result) && !c.cancelled;
    if (!result) {
      switch (result.error()) {
        case httplib::Error::Connection:
        case httplib::Error::ConnectionTimeout:
          c.failure = "cannot reach";
          break;
        case httplib::Error::SSLConnection:
          c.failure = "TLS handshake";
          if (!g_verify_failure.empty()) c.failure += ": " + g_verify_failure;
          break;
        default:
          c.failure = httplib::to_string(result.error());
      }
    }
    c.changed.notify_all();
  });

  std::unique_lock<std::mutex> lock(c.mutex);
  const bool answered = c.changed.wait_for(lock, kAnswerTimeout, [&c] { return c.status != 0 || c.done; });
  status_ = c.status;
  if (status_ != 0) return;
  const std::string failure = c.failure;
  lock.unlock();
  // No destructor runs for a constructor that throws: end the thread here.
  c.hang_up();
  c.thread.join();
  if (!answered) {
    throw RequestError(504, where_ + " did not answer within " + std::to_string(kAnswerTimeout.count()) + " s");
  }
  if (failure == "cannot reach")
    throw RequestError(502, "cannot reach " + where_ + "; the pod's traces need that agent");
  if (failure.rfind("TLS handshake", 0) == 0)
    throw RequestError(502, "the TLS handshake with " + where_ + " failed (" + failure +
                                "): the agents must share traces.peer_tls's CA and name; tell their operator");
  throw RequestError(502, where_ + " closed the connection without answering (" + failure + ")");
}

PeerTrace::~PeerTrace() {
  if (connection_->thread.joinable()) {
    connection_->hang_up();
    connection_->thread.join();
  }
}

std::string PeerTrace::read_body() {
  Connection& c = *connection_;
  std::unique_lock<std::mutex> lock(c.mutex);
  c.changed.wait_for(lock, kAnswerTimeout, [&c] { return c.done; });
  return c.data.substr(0, kMaxErrorBody);
}

bool PeerTrace::relay(LineSink& out) {
  Connection& c = *connection_;
  std::unique_lock<std::mutex> lock(c.mutex);
  for (;;) {
    c.changed.wait_for(lock, kPoll, [&c] { return !c.data.empty() || c.done; });
    if (!c.data.empty()) {
      std::string chunk;
      chunk.swap(c.data);
      c.changed.notify_all();  // room again for the connection's thread
      lock.unlock();
      out.write(chunk);
      out.flush();
      lock.lock();
    } else if (c.done) {
      return c.clean;
    }
    if (out.closed()) {
      lock.unlock();
      c.hang_up();
      return false;
    }
  }
}

}  // namespace pwru
