#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace trackevent::detail {

// A POSIX extended regular expression compiled into a DFA over bytes, for the yes/no answer that
// regexec(REG_EXTENDED | REG_NOSUB) gives in the C locale, without its per-call cost and
// allocation. It implements only a conservative subset of what regcomp accepts (see
// byte_regex.cpp); compile() returns nullopt for anything else, and the caller keeps regexec.
class ByteRegex {
 public:
  // Compiles `pattern` (the text regcomp(REG_EXTENDED) would get). Returns nullopt when the
  // pattern uses anything this class does not implement exactly, or when the automaton would get
  // too big. Throws nothing but std::bad_alloc.
  static std::optional<ByteRegex> compile(std::string_view pattern);

  // Unanchored search, as regexec without REG_NOTBOL/REG_NOTEOL on `s` as a C string: true when
  // some substring matches. A NUL byte ends the subject, as it ends regexec's. Const and
  // allocation-free, so it is safe to call from several threads at once.
  bool search(std::string_view s) const noexcept;

  std::size_t state_count() const noexcept { return flags_.size(); }

 private:
  ByteRegex() = default;

  // flags_ bits.
  static constexpr std::uint8_t kAccept = 1;       // a match has ended here: the answer is yes
  static constexpr std::uint8_t kDead = 2;         // no match can follow: the answer is no
  static constexpr std::uint8_t kAcceptAtEnd = 4;  // a match ends here if the subject does

  std::uint16_t start_ = 0;
  std::uint16_t classes_ = 0;
  std::uint8_t class_of_[256] = {};
  std::vector<std::uint16_t> next_;  // next_[state * classes_ + class]
  std::vector<std::uint8_t> flags_;  // per state
};

}  // namespace trackevent::detail
