// Network namespaces named by the user: "inode:N", a bare inode, or a path
// such as /proc/PID/ns/net or /var/run/netns/NAME.
#pragma once

#include <cstdint>
#include <string>

namespace pwru {

struct NetnsRef {
  std::uint32_t inode = 0;
  std::string path;  // a path that opens this netns; empty if none was found
};

// Throws UsageError with what to do when the netns cannot be found.
NetnsRef resolve_netns(const std::string& spec, const std::string& proc_root = "/proc");

// The netns this process runs in.
NetnsRef current_netns(const std::string& proc_root = "/proc");

// ifindex of `ifname` inside the netns at `netns_path` (entered from a
// short-lived thread, so the caller's netns never changes).
std::uint32_t ifindex_in_netns(const std::string& netns_path, const std::string& ifname);

}  // namespace pwru
