// clupy::init and clupy::parallel: run a function call on the cluster, get a Future back.
//
//   int main(int argc, char** argv) {
//     clupy::init(argc, argv);       // first thing in main: worker processes never return here
//     auto f = clupy::parallel(primes, {.server_count = 10})(150);
//     f.succeed([](const auto& v) { ... }).fail([](const clupy::Failure& e) { ... });
//     clupy::wait_all(std::vector{f}, std::chrono::seconds(10));
//   }
//
// Every process that runs a task runs this same program: servers start it as a worker process,
// in which clupy::init serves tasks instead of returning. So call init before doing anything a
// worker should not do (reading stdin, opening windows, printing a banner).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "clupy/detail/call.hpp"
#include "clupy/future.hpp"

namespace clupy {

// Per-call options; designated initializers read well: {.server_count = 2, .retries = 0}.
struct Options {
  // Spread this call site's tasks over at most this many servers, reserved for this client
  // (free servers first, then shared ones). 0: the master's default_server_request_count
  // (0 there = any server).
  unsigned server_count = 0;
  // At most this many tasks from this parallel(...) object are submitted and unfinished at
  // once; further calls return at once and wait in this process. 0: no limit of its own.
  unsigned max_in_flight = 0;
  // A task running longer is stopped (its worker killed) and fails with kTimeout. 0: none.
  std::chrono::milliseconds timeout{0};
  // Reruns of a task whose server is lost while running it (at-least-once). -1: default (3).
  int retries = -1;
  // Run only on servers that carry all of these labels (`clupy --serve --label k=v`).
  std::map<std::string, std::string> labels = {};
};

// Connects this program to its cluster, or serves tasks when the process is a worker (then it
// never returns). The master is, in order: CLUPY_MASTER_URL, master_url in ./clupy.client.yaml
// (or the file CLUPY_CLIENT_CONFIG names); if neither is set, a master answering on
// localhost:7878; if none answers, an embedded local cluster (a master and a server with one
// worker slot per core, in this process, stopped at exit). A configured master that cannot be
// reached is an error (clupy::ConnectionError), never a silent fallback. Throws
// clupy::ConfigError, ConnectionError or HandshakeError. Calling it again does nothing.
void init(int argc, char** argv);

// Fails every unfinished future (kUnavailable), disconnects, and stops an embedded cluster.
// Runs by itself at exit; call it to end earlier. Thread-safe.
void shutdown();

// The master this process talks to ("clupy://127.0.0.1:7878"), "" before init.
std::string master_url();
// True when init started an embedded local cluster.
bool embedded_cluster();

namespace detail {

class CallSite;
std::shared_ptr<CallSite> make_call_site(unsigned max_in_flight);
// Hands an encoded call to the runtime, which completes `state`. Blocks while this client has
// as many tasks outstanding as the master's window allows (backpressure). Throws clupy::Error
// if init() was not called.
void submit(std::string call, const std::string& function_name, const Options& options,
            const std::shared_ptr<CallSite>& site, std::shared_ptr<FutureStateBase> state);

// A future passed as an argument, as the runtime sees it.
struct CallInput {
  std::uint32_t position = 0;  // the argument (0-based)
  std::int32_t index = -1;     // its element in a std::vector<Future<T>> argument; -1: whole
  std::shared_ptr<FutureStateBase> state;
  // Appends the msgpack bytes of the input's value. Precondition: the input succeeded.
  std::function<void(std::string&)> encode_value;
};
// submit() of a call whose `inputs` hold nils in `call`: it runs once every input succeeded,
// with their values there; it fails with kDependency when one fails.
void submit_with_inputs(std::string call, const std::string& function_name, const Options& options,
                        const std::shared_ptr<CallSite>& site,
                        std::shared_ptr<FutureStateBase> state, std::vector<CallInput> inputs);

template <class T>
CallInput make_call_input(std::uint32_t position, std::int32_t index, const Future<T>& future) {
  std::shared_ptr<FutureState<T>> typed = FutureAccess::state(future);  // throws if invalid
  return {position, index, typed,
          [typed](std::string& out) { append_encoded(out, typed->value()); }};
}
template <class A>
void collect_inputs(std::vector<CallInput>& inputs, std::uint32_t position, const A& argument) {
  if constexpr (kIsInputArg<A>) {
    if constexpr (InputArg<std::remove_cvref_t<A>>::kIsList) {
      for (std::size_t i = 0; i < argument.size(); ++i)
        inputs.push_back(make_call_input(position, static_cast<std::int32_t>(i), argument[i]));
    } else {
      inputs.push_back(make_call_input(position, -1, argument));
    }
  }
}

}  // namespace detail

// A function bound to options; calling it submits a task. Copyable; copies share the
// max_in_flight budget. Thread-safe.
template <class F>
class Parallel {
 public:
  Parallel(F f, Options options)
      : f_(std::move(f)),
        options_(std::move(options)),
        site_(detail::make_call_site(options_.max_in_flight)) {}

  // Submits f(args...) and returns its future at once. Arguments that do not fit f, or a
  // closure that cannot travel, fail to compile with a "clupy:" message.
  //
  // An argument may be a Future<T> (or a std::vector<Future<T>>) where f takes a T (or a
  // std::vector<T>): the task runs once those futures have succeeded, with their values, which
  // go from task to task on the master without coming to this program unless it holds their
  // futures. If one fails or is cancelled, this task fails with kDependency naming it
  // (docs/api.md#futures-as-arguments). An invalid (default-constructed) future throws
  // FutureStateError here.
  template <class... Args>
  auto operator()(Args&&... args) const {
    using R = detail::CallResult<F, Args...>;
    if constexpr (detail::kHasInputArgs<Args...>) {
      std::vector<detail::CallInput> inputs;
      std::uint32_t position = 0;
      (detail::collect_inputs(inputs, position++, args), ...);
      detail::EncodedCall call = detail::encode_call(f_, std::forward<Args>(args)...);
      auto pending = detail::make_pending_future<R>();
      detail::submit_with_inputs(detail::serialize_call(call), call.function_name, options_, site_,
                                 pending.state, std::move(inputs));
      return pending.future;
    } else {
      detail::EncodedCall call = detail::encode_call(f_, std::forward<Args>(args)...);
      auto pending = detail::make_pending_future<R>();
      detail::submit(detail::serialize_call(call), call.function_name, options_, site_,
                     pending.state);
      return pending.future;
    }
  }

  const Options& options() const { return options_; }

 private:
  F f_;
  Options options_;
  std::shared_ptr<detail::CallSite> site_;
};

// Wraps a plain function, a function pointer, or a lambda whose captures are trivially
// copyable. The seed's spelling: clupy::parallel(primes, {.server_count = 10})(n).
template <class F>
Parallel<std::decay_t<F>> parallel(F&& f, Options options = {}) {
  return Parallel<std::decay_t<F>>(std::forward<F>(f), std::move(options));
}

}  // namespace clupy
