// ThreadSanitizer builds only (MQTTLB_TSAN; see CMakeLists.txt).
//
// Debian's libuv closes descriptors with syscall(SYS_close, fd), not close(),
// so that a thread being cancelled cannot unwind inside close() (libuv's
// uv__close_nocancel). A libuv built without TSan therefore closes every
// descriptor it owns (a loop's epoll set, its eventfd and signal pipe, its TCP
// handles) behind ThreadSanitizer's back: TSan still believes the number is
// open, with the history of the thread that created it, and reports a data
// race when another thread is handed the same number later (seen: a retired
// worker's loop closed by libuv, then the metrics server's accept() in its
// own thread got the number; test_lb_reload under TSan).
//
// This definition of syscall() in the executable comes before libc's for
// libuv: a close goes to close(), which TSan intercepts; every other call is
// passed on unchanged.
#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>

extern "C" long syscall(long number, ...) noexcept {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (long& x : a) x = va_arg(ap, long);  // the kernel takes at most six; extra ones are ignored
  va_end(ap);
  if (number == SYS_close) return ::close(static_cast<int>(a[0]));
  // Not a function-local static: its guard waits with syscall(SYS_futex)
  // when two threads race the first call, which would come back here.
  using Fn = long (*)(long, ...);
  static std::atomic<Fn> real{nullptr};
  Fn f = real.load(std::memory_order_acquire);
  if (f == nullptr) {
    f = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "syscall"));  // the same answer for every thread
    real.store(f, std::memory_order_release);
  }
  return f(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
