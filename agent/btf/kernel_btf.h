// The running kernel's type information: which tracepoints carry an skb and
// where, and the names of enums (drop reasons) as this kernel defines them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct btf;

namespace pwru {

struct SkbTracepoint {
  std::string name;       // tracepoint name, without the btf_trace_ prefix
  int skb_arg = -1;       // position among the tracepoint's own arguments
  int reason_arg = -1;    // enum skb_drop_reason argument, -1 if none
  int location_arg = -1;  // void *location next to a reason, -1 if none
};

struct SkbFunction {
  std::string name;
  int skb_arg = -1;  // 0-based position among the first five parameters; -1: none
};

class KernelBtf {
 public:
  // Loads /sys/kernel/btf/vmlinux, or `path` when not empty (--kernel-btf).
  static KernelBtf load(const std::string& path = "");
  // A module's split BTF (/sys/kernel/btf/<module>) on top of `vmlinux`,
  // which must outlive it. Its queries see only the module's own types.
  static KernelBtf load_module(const std::string& module, const KernelBtf& vmlinux);
  // Modules that have BTF (every /sys/kernel/btf entry but vmlinux), sorted.
  static std::vector<std::string> modules_with_btf(const std::string& dir = "/sys/kernel/btf");
  // Takes ownership of an already built BTF (tests build synthetic ones).
  explicit KernelBtf(struct btf* btf);

  // Every btf_trace_<name> whose prototype has a struct sk_buff * argument,
  // sorted by name. Where one has several, the first is the traced skb.
  std::vector<SkbTracepoint> skb_tracepoints() const;

  // Every function (BTF FUNC) with a struct sk_buff * among its first five
  // parameters, which is what kprobes can read from registers on every
  // architecture pwru supports; sorted by name, duplicates dropped.
  std::vector<SkbFunction> skb_functions() const;
  // The function `name` (BTF FUNC), skb_arg -1 when it takes no skb among
  // its first five parameters; nullopt when this BTF has no such function.
  std::optional<SkbFunction> function(const std::string& name) const;

  // Value -> name of an enum (e.g. "skb_drop_reason"); empty when the kernel
  // has no such enum.
  std::map<std::uint64_t, std::string> enum_values(const std::string& enum_name) const;

  const struct btf* raw() const { return btf_.get(); }

 private:
  struct Deleter {
    void operator()(struct btf* b) const noexcept;
  };
  std::unique_ptr<struct btf, Deleter> btf_;
  std::uint32_t first_own_type_ = 1;  // split BTF: ids below belong to the base
};

}  // namespace pwru
