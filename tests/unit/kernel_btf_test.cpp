// Tracepoint discovery over synthetic BTF: positions come from the
// prototypes, never from names.
#include "btf/kernel_btf.h"

#include <bpf/btf.h>
#include <gtest/gtest.h>

namespace pwru {
namespace {

class SyntheticBtf {
 public:
  SyntheticBtf() : btf_(btf__new_empty()) {
    int_id_ = btf__add_int(btf_, "int", 4, BTF_INT_SIGNED);
    void_ptr_ = btf__add_ptr(btf_, 0);
    const int skb = btf__add_struct(btf_, "sk_buff", 8);
    skb_ptr_ = btf__add_ptr(btf_, skb);
    const int sock = btf__add_struct(btf_, "sock", 8);
    sock_ptr_ = btf__add_ptr(btf_, sock);
    reason_ = btf__add_enum(btf_, "skb_drop_reason", 4);
    btf__add_enum_value(btf_, "SKB_NOT_DROPPED_YET", 0);
    btf__add_enum_value(btf_, "SKB_DROP_REASON_NOT_SPECIFIED", 2);
    btf__add_enum_value(btf_, "SKB_DROP_REASON_NO_SOCKET", 3);
  }

  // Adds typedef btf_trace_<name> = void (*)(void *data, args...).
  void tracepoint(const char* name, std::initializer_list<int> args) {
    const int proto = btf__add_func_proto(btf_, 0);
    btf__add_func_param(btf_, "", void_ptr_);
    for (int a : args) btf__add_func_param(btf_, "", a);
    const int ptr = btf__add_ptr(btf_, proto);
    btf__add_typedef(btf_, (std::string("btf_trace_") + name).c_str(), ptr);
  }

  // Adds FUNC name with the given parameter types.
  void function(const char* name, std::initializer_list<int> args) {
    const int proto = btf__add_func_proto(btf_, int_id_);
    for (int a : args) btf__add_func_param(btf_, "p", a);
    btf__add_func(btf_, name, BTF_FUNC_GLOBAL, proto);
  }

  KernelBtf release() { return KernelBtf(std::exchange(btf_, nullptr)); }
  ~SyntheticBtf() { btf__free(btf_); }

  struct btf* btf_;
  int int_id_, void_ptr_, skb_ptr_, sock_ptr_, reason_;
};

TEST(KernelBtf, FindsSkbArgumentsAtAnyPosition) {
  SyntheticBtf b;
  b.tracepoint("netif_receive_skb", {b.skb_ptr_});
  b.tracepoint("qdisc_dequeue", {b.void_ptr_, b.void_ptr_, b.int_id_, b.skb_ptr_});
  b.tracepoint("sock_rcvqueue_full", {b.sock_ptr_, b.skb_ptr_});
  b.tracepoint("sched_switch", {b.int_id_, b.void_ptr_});
  const auto tps = b.release().skb_tracepoints();
  ASSERT_EQ(tps.size(), 3u);
  EXPECT_EQ(tps[0].name, "netif_receive_skb");
  EXPECT_EQ(tps[0].skb_arg, 0);
  EXPECT_EQ(tps[1].name, "qdisc_dequeue");
  EXPECT_EQ(tps[1].skb_arg, 3);
  EXPECT_EQ(tps[2].name, "sock_rcvqueue_full");
  EXPECT_EQ(tps[2].skb_arg, 1);
  for (const auto& tp : tps) {
    EXPECT_EQ(tp.reason_arg, -1) << tp.name;
    EXPECT_EQ(tp.location_arg, -1) << tp.name;
  }
}

TEST(KernelBtf, KfreeSkbReasonAndLocationFromTheirTypes) {
  SyntheticBtf b;
  // 6.1+: (skb, location, reason); 6.12+: (skb, location, reason, rx_sk)
  b.tracepoint("kfree_skb", {b.skb_ptr_, b.void_ptr_, b.reason_, b.sock_ptr_});
  // A made-up order proves nothing is assumed about positions.
  b.tracepoint("odd_drop", {b.reason_, b.int_id_, b.skb_ptr_, b.void_ptr_});
  const auto tps = b.release().skb_tracepoints();
  ASSERT_EQ(tps.size(), 2u);
  EXPECT_EQ(tps[0].name, "kfree_skb");
  EXPECT_EQ(tps[0].skb_arg, 0);
  EXPECT_EQ(tps[0].location_arg, 1);
  EXPECT_EQ(tps[0].reason_arg, 2);
  EXPECT_EQ(tps[1].name, "odd_drop");
  EXPECT_EQ(tps[1].skb_arg, 2);
  EXPECT_EQ(tps[1].reason_arg, 0);
  EXPECT_EQ(tps[1].location_arg, 3);
}

TEST(KernelBtf, SkbFunctionsAmongTheFirstFiveParameters) {
  SyntheticBtf b;
  b.function("ip_rcv", {b.skb_ptr_, b.void_ptr_, b.void_ptr_, b.void_ptr_});
  b.function("nf_hook_slow", {b.skb_ptr_, b.void_ptr_, b.void_ptr_, b.int_id_});
  b.function("tcp_v4_do_rcv", {b.sock_ptr_, b.skb_ptr_});
  b.function("fifth", {b.int_id_, b.int_id_, b.int_id_, b.int_id_, b.skb_ptr_});
  b.function("sixth", {b.int_id_, b.int_id_, b.int_id_, b.int_id_, b.int_id_, b.skb_ptr_});
  b.function("no_skb", {b.sock_ptr_, b.int_id_});
  b.function("two_skbs", {b.skb_ptr_, b.skb_ptr_});
  const auto fns = b.release().skb_functions();
  std::vector<std::pair<std::string, int>> got;
  for (const auto& f : fns) got.emplace_back(f.name, f.skb_arg);
  const std::vector<std::pair<std::string, int>> want = {
      {"fifth", 4}, {"ip_rcv", 0}, {"nf_hook_slow", 0}, {"tcp_v4_do_rcv", 1}, {"two_skbs", 0}};
  EXPECT_EQ(got, want);
}

TEST(KernelBtf, FunctionByNameWithOrWithoutAnSkb) {
  SyntheticBtf b;
  b.function("tcp_v4_do_rcv", {b.sock_ptr_, b.skb_ptr_});
  b.function("fib_table_lookup", {b.void_ptr_, b.int_id_});
  const KernelBtf btf = b.release();
  ASSERT_TRUE(btf.function("tcp_v4_do_rcv"));
  EXPECT_EQ(btf.function("tcp_v4_do_rcv")->skb_arg, 1);
  ASSERT_TRUE(btf.function("fib_table_lookup"));
  EXPECT_EQ(btf.function("fib_table_lookup")->skb_arg, -1);
  EXPECT_FALSE(btf.function("no_such_function"));
  EXPECT_FALSE(btf.function("sk_buff"));  // a struct, not a function
}

TEST(KernelBtf, ModuleSplitBtfSeesOnlyItsOwnFunctions) {
  SyntheticBtf base;
  base.function("ip_rcv", {base.skb_ptr_});
  KernelBtf vmlinux = base.release();
  struct btf* split = btf__new_empty_split(const_cast<struct btf*>(vmlinux.raw()));
  ASSERT_NE(split, nullptr);
  const int skb = btf__find_by_name_kind(vmlinux.raw(), "sk_buff", BTF_KIND_STRUCT);
  const int skb_ptr = btf__add_ptr(split, skb);
  const int proto = btf__add_func_proto(split, 0);
  btf__add_func_param(split, "skb", skb_ptr);
  btf__add_func(split, "veth_xmit", BTF_FUNC_STATIC, proto);
  const KernelBtf module(split);
  const auto fns = module.skb_functions();
  ASSERT_EQ(fns.size(), 1u);
  EXPECT_EQ(fns[0].name, "veth_xmit");
  EXPECT_EQ(vmlinux.skb_functions().size(), 1u);
}

TEST(KernelBtf, EnumValuesByName) {
  SyntheticBtf b;
  const auto reasons = b.release().enum_values("skb_drop_reason");
  ASSERT_EQ(reasons.size(), 3u);
  EXPECT_EQ(reasons.at(3), "SKB_DROP_REASON_NO_SOCKET");
  SyntheticBtf empty;
  EXPECT_TRUE(empty.release().enum_values("no_such_enum").empty());
}

}  // namespace
}  // namespace pwru
