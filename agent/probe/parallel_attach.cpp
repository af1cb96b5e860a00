#include "probe/parallel_attach.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pwru {

namespace {

// Progress every this many attaches: a redraw per kprobe would cost more
// than the attach on a fast kernel.
constexpr std::size_t kProgressStep = 16;

struct SharedWork {
  SharedWork(std::size_t count, const std::function<void(std::size_t)>& attach_one)
      : count(count), attach_one(attach_one) {}

  const std::size_t count;
  const std::function<void(std::size_t)>& attach_one;
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::atomic<bool> stop{false};
  std::mutex failure_mutex;
  std::exception_ptr failure;

  // Takes the next index; false once there is none or attaching stopped.
  bool take(std::size_t& index) {
    if (stop.load(std::memory_order_relaxed)) return false;
    index = next.fetch_add(1);
    return index < count;
  }

  void attach(std::size_t index) {
    try {
      attach_one(index);
    } catch (...) {
      std::lock_guard lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      stop = true;
    }
    done.fetch_add(1);
  }
};

// Stops and joins the helper threads however the calling thread leaves,
// so none outlives the work it points at.
class Helpers {
 public:
  explicit Helpers(SharedWork& work) : work_(work) {}
  ~Helpers() {
    work_.stop = true;
    for (std::thread& t : threads_) t.join();
  }
  Helpers(const Helpers&) = delete;
  Helpers& operator=(const Helpers&) = delete;

  void start(unsigned how_many) {
    threads_.reserve(how_many);
    for (unsigned t = 0; t < how_many; ++t) {
      try {
        threads_.emplace_back([&work = work_] {
          for (std::size_t i; work.take(i);) work.attach(i);
        });
      } catch (...) {
        return;  // out of threads: the ones running share the rest
      }
    }
  }
  void join() {
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  SharedWork& work_;
  std::vector<std::thread> threads_;
};

}  // namespace

void attach_each_in_parallel(std::size_t count, unsigned threads, const std::function<void(std::size_t)>& attach_one,
                             const std::function<bool()>& cancelled,
                             const std::function<void(std::size_t, std::size_t)>& progress) {
  if (count == 0) return;
  SharedWork work(count, attach_one);
  std::size_t reported = 0;
  const auto report = [&](bool final) {
    const std::size_t done = work.done.load();
    if (progress && done > reported && (final || done - reported >= kProgressStep)) {
      reported = done;
      progress(done, count);
    }
  };
  {
    Helpers helpers(work);
    if (cancelled && cancelled()) return;
    helpers.start(static_cast<unsigned>(std::min<std::size_t>(std::max(threads, 1u), count) - 1));
    for (std::size_t i; work.take(i);) {
      if (cancelled && cancelled()) {
        // The index taken is left unstarted, like every later one.
        work.stop = true;
        break;
      }
      work.attach(i);
      report(false);
    }
    helpers.join();
  }
  if (work.failure) std::rethrow_exception(work.failure);
  report(true);
}

}  // namespace pwru
