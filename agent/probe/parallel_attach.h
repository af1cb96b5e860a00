// Attaching many links one after another is bound by kernel waits (a
// kprobe's registration patches text and waits on locks and IPIs), not by
// this process: overlapping them from several threads shortens start-up.
#pragma once

#include <cstddef>
#include <functional>

namespace pwru {

// Calls attach_one(i) once for each i in [0, count), from `threads` threads
// (the calling thread is one of them), starting indexes in rising order.
// attach_one must record its own outcome by index (each index is touched by
// one thread only) and must not throw; if it does, no new index starts and
// the first exception is rethrown once every thread has stopped.
//
// The calling thread alone calls `cancelled` (between its own attaches: at
// most one attach late) and `progress` (done, count), with `done`
// increasing; once `cancelled` returns true no new index starts. Indexes
// never started are left untouched. Threads that cannot be created leave
// their share to the others.
void attach_each_in_parallel(std::size_t count, unsigned threads, const std::function<void(std::size_t)>& attach_one,
                             const std::function<bool()>& cancelled,
                             const std::function<void(std::size_t, std::size_t)>& progress);

}  // namespace pwru
