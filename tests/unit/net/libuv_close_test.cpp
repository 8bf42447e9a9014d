// A descriptor libuv closes is closed for ThreadSanitizer too
// (net/tsan_libuv_close.cpp). Under TSan without the shim this test ends the
// process with a data race report (halt_on_error): libuv's raw close leaves
// TSan believing the number open with the main thread's history, and another
// thread that is handed the number, unsynchronised with the main thread,
// conflicts with it. In other builds it only checks that the number is
// reused, which is what makes the TSan run meaningful.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

TEST_CASE("a descriptor libuv closes can be handed to another thread (ThreadSanitizer sees the close)") {
  // The lowest free number: libuv's loop takes it first, and gets it back.
  int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(lowest >= 0);
  ::close(lowest);

  // Relaxed only: no happens-before from this thread's loop to the other's socket.
  std::atomic<int> stage{0};
  int reused = -1;
  std::thread other([&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (stage.load(std::memory_order_relaxed) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    reused = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  });
  // The other thread is joined before any assertion: a REQUIRE that threw
  // with it still running would end the process instead of failing the case.
  uv_loop_t loop;
  const int init = uv_loop_init(&loop);
  const int backend = init == 0 ? uv_backend_fd(&loop) : -1;
  const int closed = init == 0 ? uv_loop_close(&loop) : -1;  // libuv: syscall(SYS_close, ...)
  stage.store(1, std::memory_order_relaxed);
  other.join();
  REQUIRE(init == 0);
  REQUIRE(closed == 0);
  CHECK(backend == lowest);
  CHECK(reused == lowest);  // the number libuv closed, now the other thread's socket
  if (reused >= 0) ::close(reused);
}
