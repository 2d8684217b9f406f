// detail::wait_socket: pg::Connection's bounded wait on a connection's socket.

#include "pg/pg_wait.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>

namespace {

using std::chrono::steady_clock;

TEST(WaitSocket, APassedDeadlineTimesOutEvenWithoutASocket) {
  ASSERT_EQ(PQsocket(nullptr), -1);
  // The connect loop calls PQconnectPoll again whenever this is not 0: a connection without a
  // socket must still end at its deadline, not spin past it.
  const auto passed = steady_clock::now() - std::chrono::milliseconds(1);
  EXPECT_EQ(trackevent::detail::wait_socket(nullptr, false, passed), 0);
  EXPECT_EQ(trackevent::detail::wait_socket(nullptr, true, passed), 0);
}

TEST(WaitSocket, NoSocketBeforeTheDeadlineIsAnError) {
  const auto later = steady_clock::now() + std::chrono::seconds(30);
  const auto started = steady_clock::now();
  EXPECT_EQ(trackevent::detail::wait_socket(nullptr, false, later), -1);
  EXPECT_LT(steady_clock::now() - started, std::chrono::seconds(1)) << "it does not wait";
}

}  // namespace
