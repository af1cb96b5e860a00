#include "enrich/ksyms.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace pwru {

Ksyms Ksyms::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Ksyms{};
  return parse(in);
}

Ksyms Ksyms::parse(std::istream& in) {
  Ksyms k;
  std::string line;
  while (std::getline(in, line)) {
    // "ffffffff81000000 T _stext" or "ffffffffc0a01000 t veth_xmit\t[veth]"
    std::istringstream fields(line);
    std::string addr_hex, type, name, module;
    if (!(fields >> addr_hex >> type >> name)) continue;
    fields >> module;
    // Text symbols only: data symbols would capture return addresses that
    // fall between functions.
    if (type != "t" && type != "T" && type != "w" && type != "W") continue;
    const std::uint64_t addr = std::strtoull(addr_hex.c_str(), nullptr, 16);
    if (addr == 0) continue;
    k.names_.insert(name);
    if (!module.empty()) name += " " + module;
    k.syms_.push_back(Sym{addr, std::move(name)});
  }
  std::sort(k.syms_.begin(), k.syms_.end(),
            [](const Sym& a, const Sym& b) { return a.addr < b.addr; });
  return k;
}

std::string Ksyms::nearest(std::uint64_t addr) const {
  auto it = std::upper_bound(syms_.begin(), syms_.end(), addr,
                             [](std::uint64_t a, const Sym& s) { return a < s.addr; });
  if (it == syms_.begin()) return "";
  return std::prev(it)->name;
}

std::string Ksyms::name_or_hex(std::uint64_t addr) const {
  std::string name = nearest(addr);
  if (!name.empty()) return name;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(addr));
  return buf;
}

}  // namespace pwru
