#include "netns_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "netns/netns.h"

namespace pwru::testing {

std::string sh(const std::string& command) {
  std::string out;
  std::FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("popen failed for: " + command);
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int status = ::pclose(p);
  if (status != 0) throw std::runtime_error("command failed (" + std::to_string(status) + "): " + command + "\n" + out);
  return out;
}

namespace {
std::uint32_t inode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("stat " + path + ": " + std::strerror(errno));
  return static_cast<std::uint32_t>(st.st_ino);
}
}  // namespace

NetnsPair::NetnsPair(int index) {
  if (::geteuid() != 0) throw std::runtime_error("BPF tests need root (CAP_BPF, CAP_NET_ADMIN): run as root");
  const std::string tag = std::to_string(::getpid() % 100000) + "x" + std::to_string(index);
  ns_a = "pwt" + tag + "a";
  ns_b = "pwt" + tag + "b";
  veth_a = "pv" + tag + "a";
  veth_b = "pv" + tag + "b";
  const std::string net = "10.233." + std::to_string(index) + ".";
  ip_a = net + "1";
  ip_b = net + "2";
  ip6_a = "fd00:233:" + std::to_string(index) + "::1";
  ip6_b = "fd00:233:" + std::to_string(index) + "::2";
  try {
    sh("ip netns add " + ns_a);
    sh("ip netns add " + ns_b);
    sh("ip link add " + veth_a + " netns " + ns_a + " type veth peer name " + veth_b + " netns " + ns_b);
    for (const auto& [ns, dev, ip, ip6] :
         {std::tuple{ns_a, veth_a, ip_a, ip6_a}, std::tuple{ns_b, veth_b, ip_b, ip6_b}}) {
      sh("ip -n " + ns + " link set lo up");
      sh("ip -n " + ns + " addr add " + ip + "/24 dev " + dev);
      sh("ip -n " + ns + " -6 addr add " + ip6 + "/64 dev " + dev + " nodad");
      sh("ip -n " + ns + " link set " + dev + " up");
    }
    inode_a = inode_of(path_a());
    inode_b = inode_of(path_b());
    ifindex_a = ifindex_in_netns(path_a(), veth_a);
    ifindex_b = ifindex_in_netns(path_b(), veth_b);
    // One round trip so neighbour resolution is done before tests count events.
    sh(exec(ns_a, "ping -c 1 -W 2 " + ip_b));
  } catch (...) {
    this->~NetnsPair();
    throw;
  }
}

NetnsPair::~NetnsPair() {
  for (const std::string& ns : {ns_a, ns_b}) {
    if (ns.empty()) continue;
    try {
      sh("ip netns pids " + ns + " | xargs -r kill -9; ip netns del " + ns);
    } catch (...) {
    }
  }
}

std::string NetnsPair::exec(const std::string& ns, const std::string& command) const {
  return "ip netns exec " + ns + " " + command;
}

void in_netns(const std::string& path, const std::function<void()>& fn) {
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
      const int rc = ::setns(fd, CLONE_NEWNET);
      ::close(fd);
      if (rc != 0) throw std::runtime_error("setns " + path + ": " + std::strerror(errno));
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error) std::rethrow_exception(error);
}

void send_udp(const std::string& ns_path, const std::string& dst, std::uint16_t port, std::size_t payload) {
  in_netns(ns_path, [&] {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    ::inet_pton(AF_INET, dst.c_str(), &sa.sin_addr);
    std::string data(payload, 'p');
    const ssize_t n = ::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    ::close(fd);
    if (n < 0) throw std::runtime_error(std::string("sendto: ") + std::strerror(errno));
  });
}

}  // namespace pwru::testing
