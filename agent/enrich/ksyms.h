// Kernel symbols from /proc/kallsyms: turns return addresses (stacks, the
// drop location of kfree_skb) into function names.
#pragma once

#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pwru {

class Ksyms {
 public:
  // Reads /proc/kallsyms (or `path`). An unreadable file or one whose
  // addresses are all zero (kptr_restrict) gives an empty table: names then
  // print as hex addresses, nothing fails.
  static Ksyms load(const std::string& path = "/proc/kallsyms");
  static Ksyms parse(std::istream& in);

  // The function containing addr ("name" or "name [module]"); "" if none.
  std::string nearest(std::uint64_t addr) const;
  // nearest(), or "0x..." when no symbol covers addr.
  std::string name_or_hex(std::uint64_t addr) const;
  // Whether a text symbol of this exact name exists (in vmlinux or a module).
  bool has_function(std::string_view name) const;
  // The address of the text symbol of this exact name (the first, if a
  // module has one of the same name); nullopt when there is none.
  std::optional<std::uint64_t> address_of(std::string_view name) const;
  bool empty() const { return syms_.empty(); }
  std::size_t size() const { return syms_.size(); }

 private:
  // ~120k symbols live for the agent's lifetime: one string holds every
  // "name" or "name [module]", symbols point into it (a string and a hash
  // node per symbol cost three times as much).
  struct Sym {
    std::uint64_t addr;
    std::uint32_t offset;       // of the display name in text_
    std::uint16_t name_len;     // the bare name
    std::uint16_t display_len;  // name plus " [module]"
  };
  std::string_view name_of(const Sym& s) const { return {text_.data() + s.offset, s.name_len}; }
  std::string text_;
  std::vector<Sym> syms_;               // by address
  std::vector<std::uint32_t> by_name_;  // indexes into syms_, by bare name
};

}  // namespace pwru
