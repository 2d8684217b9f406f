#pragma once
// The library's one error convention (docs/architecture.md, "Errors"):
//
// - A fallible internal call returns Result<T> (Result<> when there is no value): the value, or an
//   Error saying what failed, password-free. It never throws for an expected failure (a disk
//   full, a server that refuses, a bad line).
// - Exceptions are for setup only: a constructor or factory that cannot give a usable object
//   (Spool::open, make_sink) throws, and its caller decides at start-up.
// - catch (...) appears only at the noexcept boundaries: the Tracker's methods, the worker
//   threads, the C ABI, and a Sink's write(), whose contract is a classified Failure.

#include <cassert>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace trackevent::detail {

/// Why a call failed. `sqlstate` is set when a database gave one; `message` never holds a
/// password.
struct Error {
  std::string message;
  std::string sqlstate{};  // initialised, so `Error{message}` is complete where no database spoke
};

/// The value of a call that succeeded, or why it failed. `E` is Error unless a layer needs more
/// (pg::PgError adds the constraint name).
template <typename T = void, typename E = Error>
class [[nodiscard]] Result {
 public:
  using value_type = T;
  using error_type = E;

  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit on purpose
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit on purpose

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  [[nodiscard]] T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  [[nodiscard]] const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  [[nodiscard]] T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  [[nodiscard]] const E& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  [[nodiscard]] E&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, E> v_;
};

/// A call with nothing to return: success, or an Error.
template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  using value_type = void;
  using error_type = E;

  Result() = default;
  Result(E error) : error_(std::move(error)) {}  // NOLINT: implicit on purpose

  [[nodiscard]] bool ok() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }

  [[nodiscard]] const E& error() const& {
    assert(!ok());
    return *error_;
  }
  [[nodiscard]] E&& error() && {
    assert(!ok());
    return std::move(*error_);
  }

 private:
  std::optional<E> error_;
};

/// Success of a Result<>: `return ok();`.
inline Result<> ok() { return {}; }

}  // namespace trackevent::detail
