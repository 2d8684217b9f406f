#include "trackevent/uuid.hpp"

#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>

namespace trackevent {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// A table, not comparisons: the digits of random ids defeat the branch predictor.
constexpr auto kHexValues = [] {
  std::array<signed char, 256> t{};
  for (auto& v : t) v = -1;
  for (int c = 0; c < 10; ++c) t['0' + c] = static_cast<signed char>(c);
  for (int c = 0; c < 6; ++c) {
    t['a' + c] = static_cast<signed char>(10 + c);
    t['A' + c] = static_cast<signed char>(10 + c);
  }
  return t;
}();

int hex_value(char c) noexcept { return kHexValues[static_cast<unsigned char>(c)]; }

std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

// Bumped in a forked child so every thread state inherited from the parent re-seeds; otherwise
// parent and child would produce the same "random" bits.
std::atomic<std::uint32_t> g_fork_generation{0};

void on_fork_child() noexcept { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

const bool g_atfork_registered = [] {
  return pthread_atfork(nullptr, nullptr, &on_fork_child) == 0;
}();

// xoshiro256++: fast, and good enough for the random part of an id (not for secrets).
struct ThreadState {
  std::uint64_t s[4]{};
  std::uint32_t generation = ~0U;
  std::int64_t last_ms = -1;
  std::uint32_t counter = 0;

  void seed() noexcept {
    std::uint64_t raw[4]{};
    auto* p = reinterpret_cast<unsigned char*>(raw);
    std::size_t got = 0;
    while (got < sizeof raw) {
      const ssize_t n = getrandom(p + got, sizeof raw - got, 0);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    // Without getrandom (ancient kernel, seccomp) fall back to values that still differ per
    // thread and per process; collisions then need the same ns, pid and stack address.
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    std::uint64_t mix = raw[0] ^ (static_cast<std::uint64_t>(ts.tv_sec) << 32) ^
                        static_cast<std::uint64_t>(ts.tv_nsec) ^
                        (static_cast<std::uint64_t>(getpid()) << 48) ^
                        reinterpret_cast<std::uintptr_t>(&raw);
    for (int i = 0; i < 4; ++i) s[i] = raw[i] ^ splitmix64(mix);
    if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;
    last_ms = -1;
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s[0] + s[3], 23) + s[0];
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

thread_local ThreadState t_state;

// A caller-supplied time this far behind the last one is taken as deliberate (or a clock reset),
// not as jitter; smaller steps back keep the last timestamp so ids stay ordered.
constexpr std::int64_t kMaxBackwardMs = 10'000;
constexpr std::uint32_t kCounterMax = 0xfff;

}  // namespace

void Uuid::format_to(char* out) const noexcept {
  int pos = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[pos++] = '-';
    out[pos++] = kHexDigits[bytes[i] >> 4];
    out[pos++] = kHexDigits[bytes[i] & 0x0f];
  }
}

std::string Uuid::to_string() const {
  std::string s(36, '\0');
  format_to(s.data());
  return s;
}

std::optional<Uuid> Uuid::parse(std::string_view text) noexcept {
  if (text.size() != 36) return std::nullopt;
  Uuid u;
  std::size_t pos = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      if (text[pos++] != '-') return std::nullopt;
    }
    const int hi = hex_value(text[pos]);
    const int lo = hex_value(text[pos + 1]);
    if ((hi | lo) < 0) return std::nullopt;
    u.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    pos += 2;
  }
  return u;
}

Uuid make_uuid_v7(std::int64_t unix_ms) noexcept {
  ThreadState& st = t_state;
  const std::uint32_t gen = g_fork_generation.load(std::memory_order_relaxed);
  if (st.generation != gen) {
    st.seed();
    st.generation = gen;
  }
  // 48 bits of milliseconds: clamp rather than wrap for out-of-range input.
  if (unix_ms < 0) unix_ms = 0;
  if (unix_ms > 0xffffffffffffLL) unix_ms = 0xffffffffffffLL;

  std::uint64_t rnd = st.next();
  if (unix_ms > st.last_ms || unix_ms + kMaxBackwardMs < st.last_ms) {
    st.last_ms = unix_ms;
    // Seed in the lower half so there is room for at least 2048 increments this millisecond.
    st.counter = static_cast<std::uint32_t>(rnd >> 53);  // 11 bits
  } else if (st.counter < kCounterMax) {
    ++st.counter;
  } else {
    // Counter exhausted: borrow the next millisecond so ordering is kept.
    if (st.last_ms < 0xffffffffffffLL) ++st.last_ms;
    st.counter = static_cast<std::uint32_t>(rnd >> 53);
  }
  const auto ms = static_cast<std::uint64_t>(st.last_ms);
  const std::uint64_t tail = st.next();

  Uuid u;
  for (int i = 0; i < 6; ++i) u.bytes[i] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
  u.bytes[6] = static_cast<std::uint8_t>(0x70 | (st.counter >> 8));
  u.bytes[7] = static_cast<std::uint8_t>(st.counter & 0xff);
  u.bytes[8] = static_cast<std::uint8_t>(0x80 | (tail >> 58));  // variant 10 + 6 random bits
  for (int i = 9; i < 16; ++i) u.bytes[i] = static_cast<std::uint8_t>(tail >> (8 * (i - 9)));
  (void)g_atfork_registered;
  return u;
}

Uuid make_uuid_v7() noexcept {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return make_uuid_v7(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

}  // namespace trackevent
