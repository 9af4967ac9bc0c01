// Result<T>: a value or an Error, shaped like C++23 std::expected so that call
// sites keep working when the project moves to it. GCC 12 in C++20 mode has no
// std::expected.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace imarot {

// An error message written for the person who runs the tool: what failed, on
// which object, and what is expected. `code` carries a native code where one
// exists (errno, a TSS2 response code), else 0.
struct Error {
  std::string message;
  int code = 0;
};

// A value of type T or an error of type E (Error unless a layer has a
// richer error type, as the RoT layer's RotError).
template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : storage_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(E error) : storage_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const { return storage_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(storage_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(storage_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(storage_));
  }
  const E& error() const {
    assert(!has_value());
    return std::get<1>(storage_);
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, E> storage_;
};

// Success without a value.
struct Ok {};

template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(Ok) {}  // NOLINT(google-explicit-constructor)
  Result(E error) : error_(std::move(error)), failed_(true) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const { return !failed_; }
  explicit operator bool() const { return has_value(); }
  const E& error() const {
    assert(failed_);
    return error_;
  }

 private:
  E error_;
  bool failed_ = false;
};

}  // namespace imarot
