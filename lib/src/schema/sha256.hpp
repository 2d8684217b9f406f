#pragma once
// A small SHA-256 (FIPS 180-4) for migration checksums and the migration lock key; not a
// general crypto library and not constant-time (it only hashes our own SQL).

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace trackevent::detail {

class Sha256 {
 public:
  using Digest = std::array<std::uint8_t, 32>;

  Sha256() noexcept;
  /// Feeds more input; may be called any number of times before finish().
  void update(std::string_view data) noexcept;
  /// Pads, finishes and returns the digest. The object must not be used afterwards.
  [[nodiscard]] Digest finish() noexcept;

 private:
  void compress(const std::uint8_t* block) noexcept;

  std::array<std::uint32_t, 8> state_{};
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

/// The SHA-256 digest of `data`.
[[nodiscard]] Sha256::Digest sha256(std::string_view data) noexcept;
/// The SHA-256 of `data` as 64 lowercase hex digits.
[[nodiscard]] std::string sha256_hex(std::string_view data);

}  // namespace trackevent::detail
