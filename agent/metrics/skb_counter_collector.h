// Turns the kernel's drop and visit counters into Prometheus series at
// scrape time: locations become function names (kallsyms), reason numbers
// become names (kernel BTF), netns inodes become pod labels (resolver).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "events/counter_source.h"

namespace pwru {

struct SkbCounterCollectorConfig {
  std::size_t max_series = 10000;  // per family; later label sets fold into one series
  // false: one visit series per function, summed over every netns (a busy
  // node's pods times its hooks is most of the agent's series); drops keep
  // their pod labels either way.
  bool visit_pod_labels = true;
};

class SkbCounterCollector final : public prometheus::Collectable {
 public:
  // `function_of` maps a kfree_skb location to the function containing it
  // (e.g. Ksyms::nearest; "" when unknown: the label is then the hex address).
  // `reason_names`: enum skb_drop_reason value -> name (SKB_DROP_REASON_
  // prefix stripped by the collector). `hook_names[hook_id]`: visit hooks.
  SkbCounterCollector(std::shared_ptr<const CounterSource> source, std::shared_ptr<const NetnsResolver> resolver,
                      std::function<std::string(std::uint64_t)> function_of,
                      std::map<std::uint64_t, std::string> reason_names, std::vector<std::string> hook_names,
                      SkbCounterCollectorConfig config);
  ~SkbCounterCollector() override;  // out of line: Impl is complete only there

  // Families:
  //   pwru_skb_drops_total{function,reason,namespace,pod,netns}       counter (packets)
  //   pwru_skb_drop_bytes_total{function,reason,namespace,pod,netns}  counter
  //   pwru_skb_function_visits_total{function,namespace,pod,netns}    counter (packets)
  //     (visit_pod_labels false: namespace="", pod="", netns="all")
  //   pwru_skb_uncounted_packets_total{map="drops"|"visits"}      counter
  //   pwru_metrics_folded_keys{metric}                                gauge
  //   pwru_kernel_map_read_failures_total                             counter
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pwru
