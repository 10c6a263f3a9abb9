#include "common/task_result.hpp"

#include <exception>
#include <string>

namespace clupy::common {

detail::OutcomeView read_task_result(const wire::TaskResult& result) {
  detail::OutcomeView view;
  if (!result.outcome().empty()) {
    try {
      view = detail::parse_outcome_view(result.outcome());
    } catch (const std::exception& e) {
      view.ok = false;
      view.failure = Failure{};
      view.failure.kind = FailureKind::kProtocol;
      view.failure.message = std::string("undecodable outcome: ") + e.what();
    }
  } else {
    const wire::TaskFailure& wire = result.failure();
    view.failure.kind = static_cast<FailureKind>(wire.kind());
    view.failure.type_name = wire.type_name();
    view.failure.message = wire.message();
    view.failure.function = wire.function();
    view.failure.server = wire.server();
    view.failure.exit_code = wire.exit_code();
    view.failure.signal = wire.signal();
  }
  if (!view.ok && view.failure.server.empty()) view.failure.server = result.server_id();
  return view;
}

}  // namespace clupy::common
