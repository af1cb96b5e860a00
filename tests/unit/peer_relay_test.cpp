// Relaying trace requests between agents (issue 15): the traces.peer_*
// configuration, the caller header, which pods count as agents, and the
// mutual TLS between a relaying agent (PeerTrace) and the peer port
// (PeerHttpServer), on loopback with certificates made here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/agent_config.h"
#include "eventually.h"
#include "http/peer_http.h"
#include "k8s/peer_locator.h"
#include "traces/trace_forward.h"

namespace pwru {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::string config_error(const std::string& text) {
  try {
    parse_agent_config(text, "test.yaml");
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "parsed without error:\n" << text;
  return "";
}

TEST(PeerConfig, DefaultsAndEveryKey) {
  const AgentConfig::Traces d = default_agent_config_parsed().traces;
  EXPECT_EQ(d.peer_port, 9465);
  EXPECT_EQ(d.peer_daemonset, "pwru-agent");
  EXPECT_EQ(d.peer_tls.name, "pwru-agent-peer");
  EXPECT_FALSE(d.peer_tls.enabled()) << "no TLS files by default: relays are refused, not sent in clear";

  const AgentConfig::Traces t =
      parse_agent_config(
          "traces:\n  peer_port: 9500\n  peer_daemonset: agents.x\n  peer_tls:\n"
          "    ca_file: /tls/ca.crt\n    cert_file: /tls/tls.crt\n    key_file: /tls/tls.key\n"
          "    name: agents.example\n",
          "test.yaml")
          .traces;
  EXPECT_EQ(t.peer_port, 9500);
  EXPECT_EQ(t.peer_daemonset, "agents.x");
  EXPECT_TRUE(t.peer_tls.enabled());
  EXPECT_EQ(t.peer_tls.ca_file, "/tls/ca.crt");
  EXPECT_EQ(t.peer_tls.cert_file, "/tls/tls.crt");
  EXPECT_EQ(t.peer_tls.key_file, "/tls/tls.key");
  EXPECT_EQ(t.peer_tls.name, "agents.example");
}

TEST(PeerConfig, BadValuesAndCombinationsNameTheKey) {
  EXPECT_THAT(config_error("traces:\n  peer_tls:\n    ca_file: /ca\n    cert_file: /c\n"),
              AllOf(HasSubstr("traces.peer_tls needs ca_file, cert_file and key_file together"),
                    HasSubstr("missing: key_file")));
  EXPECT_THAT(config_error("traces:\n  peer_tls:\n    ca_file: tls/ca.crt\n"),
              AllOf(HasSubstr("traces.peer_tls.ca_file"), HasSubstr("absolute path")));
  EXPECT_THAT(config_error("traces:\n  peer_tls:\n    name: Bad_Name\n"),
              AllOf(HasSubstr("traces.peer_tls.name"), HasSubstr("DNS name")));
  EXPECT_THAT(config_error("traces:\n  peer_tls:\n    cert: /c\n"),
              AllOf(HasSubstr("traces.peer_tls.cert"), HasSubstr("did you mean cert_file?")));
  EXPECT_THAT(config_error("traces:\n  peer_port: 70000\n"),
              AllOf(HasSubstr("traces.peer_port"), HasSubstr("from 1 to 65535")));
  EXPECT_THAT(config_error("traces:\n  peer_daemonset: \"\"\n"), HasSubstr("traces.peer_daemonset"));
  EXPECT_THAT(config_error("http:\n  listen: 127.0.0.1:9465\ntraces:\n  peer_tls:\n    ca_file: /ca\n"
                           "    cert_file: /c\n    key_file: /k\n"),
              HasSubstr("traces.peer_port 9465 is http.listen's port too"));
}

TEST(CallerHeader, RoundTripsTheIdentityInAscii) {
  TraceCaller caller;
  caller.user = "jos\xc3\xa9@example.com";
  caller.uid = "u-1";
  caller.groups = {"system:authenticated", "team\r\nX-Injected: 1"};
  caller.extra_json = R"({"scopes":["a","b"]})";
  const std::string header = encode_caller(caller, "10.0.0.9:4242");
  for (char c : header) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << int(c) << " in " << header;
  const RelayedCaller back = decode_caller(header);
  EXPECT_EQ(back.caller.user, caller.user);
  EXPECT_EQ(back.caller.uid, "u-1");
  EXPECT_EQ(back.caller.groups, caller.groups);
  EXPECT_EQ(json::parse(back.caller.extra_json), json::parse(caller.extra_json));
  EXPECT_EQ(back.remote, "10.0.0.9:4242");
}

TEST(CallerHeader, MalformedHeadersAre400s) {
  for (const std::string bad :
       {"", "not json", "[1]", R"({"user":5})", R"({"user":"a","groups":"g"})", R"({"user":"a","groups":[1]})",
        R"({"user":"a","extra":{"k":"v"}})", R"({"user":"a","extra":[]})"}) {
    try {
      decode_caller(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 400) << bad;
      EXPECT_THAT(e.what(), HasSubstr("X-Pwru-Caller")) << bad;
    }
  }
}

TEST(CallerHeader, AnIdentityTooLargeForAHeaderIsRefused) {
  TraceCaller caller;
  caller.user = "u";
  caller.groups.assign(400, "a-rather-long-group-name");
  try {
    encode_caller(caller, "");
    FAIL() << "encoded";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_THAT(e.what(), HasSubstr("400 groups"));
  }
}

json agent_pod(const std::string& name, const json& owners, bool ready = true, const std::string& phase = "Running") {
  return {
      {"metadata", {{"name", name}, {"ownerReferences", owners}}},
      {"spec",
       {{"nodeName", "n2"},
        {"containers",
         {{{"name", "agent"},
           {"ports", {{{"name", "http"}, {"containerPort", 9464}}, {{"name", "peer"}, {"containerPort", 9470}}}}}}}}},
      {"status",
       {{"phase", phase},
        {"podIP", "10.0.0.2"},
        {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
}

json owner(const std::string& kind, const std::string& name, bool controller = true,
           const std::string& api_version = "apps/v1") {
  return json::array({{{"apiVersion", api_version}, {"kind", kind}, {"name", name}, {"controller", controller}}});
}

TEST(PickPeerAgent, OnlyAReadyPodOfTheDaemonSetCounts) {
  const json list = {{"items",
                      {agent_pod("rs-pod", owner("ReplicaSet", "pwru-agent-7c9f")),
                       agent_pod("other-ds", owner("DaemonSet", "pwru-agent-evil")),
                       agent_pod("adopted", owner("DaemonSet", "pwru-agent", false)),
                       agent_pod("old-api", owner("DaemonSet", "pwru-agent", true, "extensions/v1beta1")),
                       agent_pod("bare", json::array()), agent_pod("unready", owner("DaemonSet", "pwru-agent"), false),
                       agent_pod("pending", owner("DaemonSet", "pwru-agent"), true, "Pending"),
                       agent_pod("the-agent", owner("DaemonSet", "pwru-agent"))}}};
  std::vector<std::string> passed_over;
  const std::optional<PeerAgent> peer = pick_peer_agent(list, "pwru-agent", 9465, passed_over);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->pod, "the-agent");
  EXPECT_EQ(peer->host, "10.0.0.2");
  EXPECT_EQ(peer->port, 9470) << "the container port named peer";
  ASSERT_EQ(passed_over.size(), 7u);
  EXPECT_THAT(passed_over[0], AllOf(HasSubstr("rs-pod"), HasSubstr("not a pod of DaemonSet pwru-agent")));
  EXPECT_THAT(passed_over[5], AllOf(HasSubstr("unready"), HasSubstr("not Running and Ready")));
}

TEST(PickPeerAgent, NoneWhenNoPodQualifiesAndDefaultPortWithoutAPeerPort) {
  std::vector<std::string> passed_over;
  EXPECT_FALSE(
      pick_peer_agent(json{{"items", {agent_pod("rs", owner("ReplicaSet", "x"))}}}, "pwru-agent", 9465, passed_over));
  EXPECT_FALSE(pick_peer_agent(json{{"items", "oops"}}, "pwru-agent", 9465, passed_over));
  EXPECT_FALSE(pick_peer_agent(json::array(), "pwru-agent", 9465, passed_over));
  json pod = agent_pod("a", owner("DaemonSet", "pwru-agent"));
  pod["spec"]["containers"][0]["ports"] = json::array();
  const std::optional<PeerAgent> peer = pick_peer_agent(json{{"items", {pod}}}, "pwru-agent", 9465, passed_over);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->port, 9465);
}

// A CA and certificates as the chart makes them, written to a temporary
// directory as PEM files.
class TestPki {
 public:
  TestPki() {
    char dir[] = "/tmp/pwru-peer-tls-XXXXXX";
    if (!mkdtemp(dir)) throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
  }
  ~TestPki() {
    for (const std::string& f : files_) std::remove(f.c_str());
    std::remove(dir_.c_str());
  }

  struct Ca {
    EVP_PKEY* key;
    X509* cert;
    std::string file;
  };
  Ca ca(const std::string& label) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = make(key, label, nullptr, nullptr, "");
    return Ca{key, cert, write(label + "-ca.crt", cert, nullptr)};
  }
  // A peer's files ({ca, cert, key}) with a certificate named `dns` signed by `ca`.
  AgentConfig::Traces::PeerTls peer(const Ca& signer, const Ca& trusted, const std::string& label,
                                    const std::string& dns = "pwru-agent-peer") {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = make(key, label, signer.cert, signer.key, dns);
    AgentConfig::Traces::PeerTls tls;
    tls.ca_file = trusted.file;
    tls.cert_file = write(label + ".crt", cert, nullptr);
    tls.key_file = write(label + ".key", nullptr, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    return tls;
  }

 private:
  static void add(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509* make(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key, const std::string& dns) {
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), ++serial_);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(issuer ? issuer : cert));
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, nullptr, nullptr, 0);
    if (dns.empty()) {
      add(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE");
      add(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add(cert, &ctx, NID_subject_alt_name, "DNS:" + dns);
      add(cert, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256());
    return cert;
  }
  std::string write(const std::string& name, X509* cert, EVP_PKEY* key) {
    const std::string path = dir_ + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (cert) PEM_write_X509(f, cert);
    if (key) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    files_.push_back(path);
    return path;
  }

  std::string dir_;
  std::vector<std::string> files_;
  long serial_ = 0;
};

// Collects what a relay writes; "closes" (the caller hanging up) after
// `close_after` writes, if set.
class CollectingSink final : public LineSink {
 public:
  explicit CollectingSink(int close_after = -1) : close_after_(close_after) {}
  void write(std::string_view text) override {
    text_.append(text);
    ++writes_;
  }
  void flush() override {}
  bool closed() const override { return close_after_ >= 0 && writes_ >= close_after_; }
  const std::string& text() const { return text_; }

 private:
  int close_after_;
  int writes_ = 0;
  std::string text_;
};

class PeerMutualTls : public ::testing::Test {
 protected:
  void SetUp() override {
    release_ = pki_.ca("release");
    other_ = pki_.ca("other");
    server_tls_ = pki_.peer(release_, release_, "server");
  }
  void TearDown() override {
    for (TestPki::Ca* ca : {&release_, &other_}) {
      X509_free(ca->cert);
      EVP_PKEY_free(ca->key);
    }
  }

  // A peer port whose traces write `lines` and then wait until the relaying
  // agent hangs up (at most 10 s), or refuse with `refusal` when set.
  std::unique_ptr<PeerHttpServer> serve(const AgentConfig::Traces::PeerTls& tls, std::string lines,
                                        std::optional<RequestError> refusal = std::nullopt) {
    PeerRoutes routes;
    routes.start = [this, lines, refusal](const std::string& body, const std::string&, const std::string& caller,
                                          const std::string& from) {
      ++started_;
      body_ = body;
      caller_ = caller;
      from_ = from;
      if (refusal) throw *refusal;
      return PeerRoutes::Stream([this, lines](LineSink& out) {
        out.write(lines);
        out.flush();
        if (testing::eventually([&] { return out.closed(); }, std::chrono::seconds(10))) saw_hang_up_ = true;
      });
    };
    return std::make_unique<PeerHttpServer>("127.0.0.1", 0, tls, std::move(routes));
  }
  PeerAgent peer_at(std::uint16_t port) { return PeerAgent{"n2", "pwru-agent-n2", "127.0.0.1", port}; }

  TestPki pki_;
  TestPki::Ca release_{}, other_{};
  AgentConfig::Traces::PeerTls server_tls_;
  std::atomic<int> started_{0};
  std::atomic<bool> saw_hang_up_{false};
  std::string body_, caller_, from_;
};

TEST_F(PeerMutualTls, RelaysTheStreamAndTheHangUp) {
  auto server = serve(server_tls_, "{\"func\":\"a\"}\n{\"func\":\"b\"}\n");
  const AgentConfig::Traces::PeerTls client_tls = pki_.peer(release_, release_, "client");
  PeerTrace trace(peer_at(server->port()), client_tls, R"({"pod":"p"})", R"({"user":"alice"})", "n1",
                  std::chrono::seconds(30));
  ASSERT_EQ(trace.status(), 200);
  CollectingSink out(1);  // the caller hangs up after the first chunk
  EXPECT_FALSE(trace.relay(out)) << "a relay its caller left did not end cleanly";
  EXPECT_EQ(out.text(), "{\"func\":\"a\"}\n{\"func\":\"b\"}\n");
  EXPECT_TRUE(testing::eventually([&] { return saw_hang_up_.load(); })) << "the peer's trace never saw the hang-up";
  EXPECT_EQ(body_, R"({"pod":"p"})");
  EXPECT_EQ(caller_, R"({"user":"alice"})");
  EXPECT_EQ(from_, "n1");
}

// A peer whose node vanished mid-trace sends nothing more: after quiet_for
// the relay ends as broken (not clean), and the connection is closed.
TEST_F(PeerMutualTls, APeerQuietLongerThanQuietForEndsTheRelay) {
  auto server = serve(server_tls_, "{\"func\":\"a\"}\n");
  PeerTrace trace(peer_at(server->port()), pki_.peer(release_, release_, "client"), "{}", "{}", "n1",
                  std::chrono::seconds(1));
  ASSERT_EQ(trace.status(), 200);
  CollectingSink out;  // a caller that stays
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(trace.relay(out)) << "a peer that went quiet counted as a clean end";
  // The peer's stream itself lasts 10 s: ending sooner is the read timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(out.text(), "{\"func\":\"a\"}\n");
  EXPECT_TRUE(testing::eventually([&] { return saw_hang_up_.load(); })) << "the peer's trace never saw the hang-up";
}

TEST_F(PeerMutualTls, APeerRefusalComesBackWithItsStatus) {
  auto server = serve(server_tls_, "", RequestError(403, "bob may not create pods/trace"));
  PeerTrace trace(peer_at(server->port()), pki_.peer(release_, release_, "client"), "{}", "{}", "n1",
                  std::chrono::seconds(30));
  EXPECT_EQ(trace.status(), 403);
  EXPECT_THAT(trace.read_body(), HasSubstr("bob may not create pods/trace"));
}

// The relaying agent's handshake refuses a server whose certificate the
// release CA did not sign, or that is not named as a peer.
TEST_F(PeerMutualTls, TheClientRefusesAServerOfAnotherCaOrName) {
  const AgentConfig::Traces::PeerTls client_tls = pki_.peer(release_, release_, "client");
  for (const auto& [what, tls] : std::vector<std::pair<std::string, AgentConfig::Traces::PeerTls>>{
           {"another CA", pki_.peer(other_, release_, "foreign-server")},
           {"another name", pki_.peer(release_, release_, "misnamed-server", "evil.example")}}) {
    auto server = serve(tls, "{}\n");
    try {
      PeerTrace trace(peer_at(server->port()), client_tls, "{}", "{}", "n1", std::chrono::seconds(30));
      ADD_FAILURE() << what << ": relayed";
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 502) << what;
      EXPECT_THAT(e.what(), HasSubstr("TLS handshake")) << what;
    }
  }
  EXPECT_EQ(started_.load(), 0) << "a request reached a server the handshake should have refused";
}

// The peer port refuses a client whose certificate the release CA did not
// sign, or that is not named as a peer: no request gets through.
TEST_F(PeerMutualTls, TheServerRefusesAClientOfAnotherCaOrName) {
  auto server = serve(server_tls_, "{}\n");
  for (const auto& [what, tls] : std::vector<std::pair<std::string, AgentConfig::Traces::PeerTls>>{
           {"another CA", pki_.peer(other_, release_, "foreign-client")},
           {"another name", pki_.peer(release_, release_, "misnamed-client", "evil.example")}}) {
    try {
      PeerTrace trace(peer_at(server->port()), tls, "{}", "{}", "n1", std::chrono::seconds(30));
      ADD_FAILURE() << what << ": answered " << trace.status();
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 502) << what;
    }
  }
  EXPECT_EQ(started_.load(), 0) << "a request from a client the handshake should have refused got through";
}

// A stranger who trusts the release CA but has no certificate of its own:
// with TLS 1.3 its handshake looks complete from its side, so the proof is
// that no request reaches a route and no status comes back.
TEST_F(PeerMutualTls, TheServerRefusesAClientWithoutACertificate) {
  auto server = serve(server_tls_, "{}\n");
  httplib::SSLClient client("127.0.0.1", server->port());
  client.set_ca_cert_path(server_tls_.ca_file.c_str());
  client.enable_server_certificate_verification(false);
  client.set_connection_timeout(3, 0);
  client.set_read_timeout(5, 0);
  const httplib::Headers forged = {{kCallerHeader, R"({"user":"alice"})"}, {kForwardedByHeader, "n2"}};
  const httplib::Result result = client.Post("/v1/traces", forged, R"({"pod":"p"})", "application/json");
  EXPECT_FALSE(result) << "answered " << result->status << ": " << result->body;
  EXPECT_EQ(started_.load(), 0) << "a request without a client certificate got through";
}

TEST_F(PeerMutualTls, UnusableFilesAreNamed) {
  AgentConfig::Traces::PeerTls tls = server_tls_;
  tls.key_file = pki_.peer(release_, release_, "unrelated").key_file;
  try {
    serve(tls, "");
    FAIL() << "served with a key that is not the certificate's";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("traces.peer_tls.key_file"), HasSubstr("key values mismatch")));
  }
  tls = server_tls_;
  tls.ca_file = "/nonexistent/ca.crt";
  try {
    PeerTrace trace(peer_at(1), tls, "{}", "{}", "n1", std::chrono::seconds(30));
    FAIL() << "relayed without a CA";
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 503);
    EXPECT_THAT(e.what(), AllOf(HasSubstr("traces.peer_tls.ca_file"), HasSubstr("/nonexistent/ca.crt"),
                                HasSubstr("No such file or directory")));
  }
}

}  // namespace
}  // namespace pwru
