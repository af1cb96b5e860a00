// Two network namespaces joined by a veth pair, made for one test and
// removed after it. Addresses live only inside them; traffic never leaves.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace pwru::testing {

// Runs a shell command; throws with its output when it fails.
std::string sh(const std::string& command);

class NetnsPair {
 public:
  // index keeps concurrent pairs apart: 10.233.<index>.0/24, fd00:233:<index>::/64
  explicit NetnsPair(int index = 1);
  ~NetnsPair();
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;

  std::string ns_a, ns_b;      // names under /var/run/netns
  std::string veth_a, veth_b;  // veth_a lives in ns_a, veth_b in ns_b
  std::string ip_a, ip_b, ip6_a, ip6_b;
  std::uint32_t inode_a = 0, inode_b = 0;
  std::uint32_t ifindex_a = 0, ifindex_b = 0;

  std::string path_a() const { return "/var/run/netns/" + ns_a; }
  std::string path_b() const { return "/var/run/netns/" + ns_b; }
  // `ip netns exec <ns> <command>`
  std::string exec(const std::string& ns, const std::string& command) const;
};

// Runs fn on a thread that has entered the netns at path.
void in_netns(const std::string& path, const std::function<void()>& fn);

// Sends one UDP datagram from inside ns_path to dst:port.
void send_udp(const std::string& ns_path, const std::string& dst, std::uint16_t port, std::size_t payload = 32);

}  // namespace pwru::testing
