#include "netns/netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/error.h"
#include "common/unique_fd.h"

namespace pwru {

namespace {

bool inode_of(const std::string& path, std::uint32_t* inode) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  *inode = static_cast<std::uint32_t>(st.st_ino);
  return true;
}

// Finds a path for a netns known only by inode: named netns first, then
// any process living in it.
std::string path_for_inode(std::uint32_t inode, const std::string& proc_root) {
  std::uint32_t found = 0;
  const std::string self = proc_root + "/self/ns/net";
  if (inode_of(self, &found) && found == inode) return self;
  std::error_code ec;
  for (const char* dir : {"/var/run/netns", "/run/netns"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (inode_of(entry.path().string(), &found) && found == inode) return entry.path().string();
    }
  }
  for (const auto& entry : std::filesystem::directory_iterator(proc_root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string candidate = entry.path().string() + "/ns/net";
    if (inode_of(candidate, &found) && found == inode) return candidate;
  }
  return "";
}

}  // namespace

NetnsRef current_netns(const std::string& proc_root) {
  NetnsRef ref;
  ref.path = proc_root + "/self/ns/net";
  if (!inode_of(ref.path, &ref.inode))
    throw SystemError("cannot stat " + ref.path + " to find the current netns", errno);
  return ref;
}

NetnsRef resolve_netns(const std::string& spec, const std::string& proc_root) {
  std::string number = spec;
  if (spec.rfind("inode:", 0) == 0) number = spec.substr(6);
  const bool numeric = !number.empty() && number.find_first_not_of("0123456789") == std::string::npos;
  NetnsRef ref;
  if (numeric) {
    const unsigned long long v = std::strtoull(number.c_str(), nullptr, 10);
    if (v == 0 || v > 0xffffffffULL)
      throw UsageError("--filter-netns " + spec + ": not a netns inode (see `ls -L -i /proc/PID/ns/net`)");
    ref.inode = static_cast<std::uint32_t>(v);
    ref.path = path_for_inode(ref.inode, proc_root);
    return ref;
  }
  if (spec.rfind("inode:", 0) == 0)
    throw UsageError("--filter-netns " + spec + ": expected inode:<number>, e.g. inode:4026531840");
  if (!inode_of(spec, &ref.inode))
    throw UsageError("--filter-netns " + spec + ": " + std::strerror(errno) +
                     "; give /proc/<pid>/ns/net, /var/run/netns/<name> or inode:<inode>");
  ref.path = spec;
  return ref;
}

std::uint32_t ifindex_in_netns(const std::string& netns_path, const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IF_NAMESIZE)
    throw UsageError("--filter-ifname '" + ifname + "': interface names have 1 to " + std::to_string(IF_NAMESIZE - 1) +
                     " characters");
  UniqueFd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) throw SystemError("opening netns " + netns_path + " to look up " + ifname, errno);
  std::uint32_t ifindex = 0;
  int err = 0;
  // setns() changes only the calling thread; a throwaway thread keeps this
  // process's own netns untouched.
  std::thread worker([&] {
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    ifindex = ::if_nametoindex(ifname.c_str());
    if (ifindex == 0) err = errno;
  });
  worker.join();
  if (ifindex == 0) {
    if (err == ENODEV || err == ENXIO)
      throw UsageError("--filter-ifname " + ifname + ": no such interface in netns " + netns_path +
                       " (list them with `ip -n <name> link` or `nsenter --net=" + netns_path + " ip link`)");
    throw SystemError("looking up " + ifname + " in netns " + netns_path, err ? err : EINVAL);
  }
  return ifindex;
}

}  // namespace pwru
