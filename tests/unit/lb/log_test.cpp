#include "lb/log.hpp"

#include <doctest/doctest.h>

TEST_CASE("LogLimiter: one line per period, the skipped ones are counted") {
  lb::LogLimiter lim(1000);
  uint64_t skipped = 99;
  CHECK(lim.allow(5000, skipped));
  CHECK(skipped == 0);
  for (int t : {5001, 5500, 5999}) CHECK(!lim.allow(t, skipped));
  CHECK(lim.allow(6000, skipped));
  CHECK(skipped == 3);
  CHECK(!lim.allow(6999, skipped));
  CHECK(lim.allow(9000, skipped));
  CHECK(skipped == 1);
}
