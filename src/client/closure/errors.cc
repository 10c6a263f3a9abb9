#include "clupy/errors.hpp"

#include <string.h>  // sigabbrev_np

#include <ostream>

namespace clupy {

std::string_view to_string(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::kException:
      return "exception";
    case FailureKind::kCrash:
      return "crash";
    case FailureKind::kTimeout:
      return "timeout";
    case FailureKind::kCancelled:
      return "cancelled";
    case FailureKind::kLost:
      return "lost";
    case FailureKind::kUnavailable:
      return "unavailable";
    case FailureKind::kProtocol:
      return "protocol";
    case FailureKind::kDependency:
      return "dependency";
  }
  return "unknown";
}

namespace {

std::string signal_name(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  return abbrev != nullptr ? std::string(abbrev) : "?";
}

}  // namespace

std::string Failure::to_string() const {
  std::string text(clupy::to_string(kind));
  if (kind == FailureKind::kException) {
    text += " " + (type_name.empty() ? std::string("(unknown type)") : type_name);
    if (!message.empty()) text += ": \"" + message + "\"";
  } else {
    if (!type_name.empty()) text += " " + type_name;
    if (!message.empty()) text += ": " + message;
  }
  if (signal != 0) {
    text += " (signal " + std::to_string(signal) + ", SIG" + signal_name(signal) + ")";
  } else if (kind == FailureKind::kCrash) {
    text += " (exit code " + std::to_string(exit_code) + ")";
  }
  if (!function.empty()) text += " in " + function;
  if (task_id != 0 || !server.empty()) {
    text += " (";
    if (task_id != 0) text += "task " + std::to_string(task_id);
    if (task_id != 0 && !server.empty()) text += " ";
    if (!server.empty()) text += "on server " + server;
    text += ")";
  }
  return text;
}

std::ostream& operator<<(std::ostream& out, const Failure& failure) {
  return out << failure.to_string();
}

RemoteError::RemoteError(Failure failure)
    : Error(failure.to_string()), failure_(std::move(failure)) {}

}  // namespace clupy
