// Errors at CluPy's public edge: the description of a failed task (`Failure`) and the typed
// exceptions the client API throws. Everything here is a plain value type, safe to copy between
// threads; nothing here is thread-affine.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <string_view>

namespace clupy {

// Why a task did not produce a value.
enum class FailureKind : std::uint8_t {
  kException,    // the task threw; type_name and message say what
  kCrash,        // the worker process died (signal or exit code) while running the task
  kTimeout,      // the task ran longer than its timeout and was stopped
  kCancelled,    // Future::cancel() or the runtime cancelled it before a result arrived
  kLost,         // the task's server died and every retry was used up
  kUnavailable,  // the cluster could not be reached, or its master restarted: fate unknown
  kProtocol,     // bytes could not be decoded, or the code the task names is not loaded here
  kDependency,   // a Future passed as an argument failed or was cancelled; the message names
                 // that input's task id and its failure, and the task never ran
};

// "exception", "crash", "timeout", "cancelled", "lost", "unavailable", "protocol",
// "dependency".
std::string_view to_string(FailureKind kind) noexcept;

// What went wrong with one task. Fields that do not apply to a kind are left empty or zero.
struct Failure {
  FailureKind kind = FailureKind::kException;
  std::string type_name;      // demangled C++ type of the exception (kException), else free-form
  std::string message;        // what() of the exception, or a sentence that explains the failure
  std::string function;       // the task's function: registered name, symbol or lambda type
  std::string server;         // the server that ran (or lost) the task; empty if unknown/local
  std::uint64_t task_id = 0;  // the runtime's id of the task; 0 if never assigned
  int exit_code = 0;          // kCrash: the worker's exit status when it exited by itself
  int signal = 0;             // kCrash/kTimeout: the signal that ended the worker, else 0

  // One line for people, e.g.
  //   exception std::invalid_argument: "n < 2" in primes (task 17 on server s1:7879)
  //   crash: worker killed by signal 11 (SEGV) in primes (task 18 on server s1:7879)
  std::string to_string() const;

  friend bool operator==(const Failure&, const Failure&) = default;
};

// Writes failure.to_string().
std::ostream& operator<<(std::ostream& out, const Failure& failure);

// The base of every exception the CluPy client API throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by Future::get() and Future::value() when the task failed. what() is
// failure().to_string(); failure() holds every detail.
class RemoteError : public Error {
 public:
  explicit RemoteError(Failure failure);
  const Failure& failure() const noexcept { return failure_; }

 private:
  Failure failure_;
};

// Thrown when a Future is used in a way its state does not allow: value() or failure() before
// completion, failure() of a successful future, or any call on a default-constructed Future.
class FutureStateError : public Error {
 public:
  using Error::Error;
};

// Thrown when a call cannot be encoded for shipping although it compiled: the code lives in a
// segment that has no identity (no build-id and no readable file), the function pointer is
// null, or a registered name is claimed by two different functions.
class EncodeError : public Error {
 public:
  using Error::Error;
};

// ---- connection and configuration errors (shared with the foundation: master, server, CLI) ----

// A configuration file, flag or token file is wrong. The message names the file, the line and
// the key when there is one.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// The master could not be reached, or the connection to it was lost.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

// The peer refused the handshake: a protocol version mismatch (the message names both
// versions) or a failed authentication.
class HandshakeError : public Error {
 public:
  using Error::Error;
};

}  // namespace clupy
