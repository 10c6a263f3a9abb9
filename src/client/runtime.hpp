// libclupy's client runtime: one connection to the master, served by one I/O thread; user
// threads submit tasks, results complete futures on the I/O thread.
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "client/embedded.hpp"
#include "client/submission_window.hpp"
#include "client/worker_output.hpp"
#include "clupy.pb.h"
#include "clupy/parallel.hpp"
#include "common/config.hpp"
#include "common/connection.hpp"
#include "common/dial.hpp"
#include "common/master_locator.hpp"
#include "deps/manifest.hpp"

namespace clupy::detail {

// The max_in_flight budget of one Parallel object (and its copies).
class CallSite {
 public:
  explicit CallSite(unsigned limit) : limit_(limit) {}
  unsigned limit_;
  unsigned in_flight_ = 0;          // guarded by the runtime's mutex
  std::deque<std::uint64_t> held_;  // task ids waiting for a slot, in call order
};

}  // namespace clupy::detail

namespace clupy::client {

namespace asio = boost::asio;

class Runtime {
 public:
  // The initialized runtime; throws clupy::Error telling the user to call clupy::init first.
  static Runtime& get();
  static void initialize(int argc, char** argv);
  static void shutdown_all();
  static bool initialized();

  // `service`: run in that published service's job instead of this program's ("": here).
  void submit(std::string call, const std::string& function_name, const Options& options,
              const std::shared_ptr<detail::CallSite>& site,
              std::shared_ptr<detail::FutureStateBase> state, const std::string& service = "");
  // A call with futures among its arguments (detail::submit_with_inputs).
  void submit_with_inputs(std::string call, const std::string& function_name,
                          const Options& options, const std::shared_ptr<detail::CallSite>& site,
                          std::shared_ptr<detail::FutureStateBase> state,
                          std::vector<detail::CallInput> inputs);
  // The master's address and what it announced at the handshake (store, coordination). Both
  // change when a standby master takes over (adopt(), on the I/O thread), so they are returned
  // by value; safe from any thread.
  std::string master_url() const;
  wire::ClusterServices services() const;
  bool embedded() const { return embedded_ != nullptr; }

  Runtime();
  ~Runtime();

 private:
  // A task with futures among its arguments, from submit_with_inputs until its spec is sent
  // (and again when the master answers inputs_gone). docs/api.md#futures-as-arguments.
  struct Dependent {
    std::string call;  // nils in the inputs' places
    std::string function_name;
    Options options;
    std::shared_ptr<detail::CallSite> site;
    std::shared_ptr<detail::FutureStateBase> state;
    std::vector<detail::CallInput> inputs;
    // Inputs whose value this task may still need in this process: their release to the
    // master waits until the task's spec is on its way (guarded by mu_).
    std::vector<std::uint64_t> pinned;
    // After inputs_gone: an input still pending here is waited for here, not named again.
    bool wait_here = false;
  };
  struct Pending {
    std::shared_ptr<detail::FutureStateBase> state;
    std::shared_ptr<detail::CallSite> site;
    std::string function_name;
    wire::TaskSpec spec;  // kept only while held back by max_in_flight
    bool held = false;
    bool released = false;                 // ReleaseResults sent for it
    std::uint32_t pins = 0;                // Dependents that may still need its value here
    std::shared_ptr<Dependent> dependent;  // its inputs, when it has any
    // Its call, when the master places it and this process pushes the bytes (pushed calls):
    // kept until its result, for a push after a placement again.
    std::shared_ptr<const std::string> pushed_call;
  };
  // Queues the spec; false (nothing done) when `dependent` names an input that cannot be
  // referenced on the master (not sent yet): the caller waits for it here.
  bool enqueue(std::string call, const std::string& function_name, const Options& options,
               const std::shared_ptr<detail::CallSite>& site,
               std::shared_ptr<detail::FutureStateBase> state, const std::string& service,
               std::shared_ptr<Dependent> dependent,
               std::vector<std::pair<std::uint64_t, const detail::CallInput*>> references);
  // Puts finished inputs' values into the call, names pending ones, or waits for one here.
  void resolve(std::shared_ptr<Dependent> dependent);
  void pin_inputs(Dependent& dependent);    // under mu_
  void unpin_inputs(Dependent& dependent);  // under mu_
  // Sends ReleaseResults for the task if no one can read its value any more (under mu_).
  void release_if_unobserved(std::uint64_t task_id);

  void connect(const common::ClientConfig& config);
  void open_job();
  void send_open_job();  // on the I/O thread
  void upload_image();
  void on_message(wire::Envelope& message);
  void on_closed(const std::string& reason);
  // Standby masters: wait for the next elected master, reopen the job, resubmit what is unfinished.
  asio::awaitable<void> fail_over(std::string reason);
  void adopt(common::Dialed dialed);
  void on_reopened(const wire::JobOpened& job);
  struct Completion {
    std::shared_ptr<detail::FutureStateBase> state;
    wire::TaskResult result;
    std::string function_name;
  };
  void on_results(wire::TaskResults& results);
  // Held results (protocol 1.4; held_results.cc, docs/protocol.md#held-results).
  struct HeldEntry {
    wire::ResultRef ref;
    std::uint32_t pins = 0;  // Dependents that may still name it (pin_inputs)
    bool dropped = false;    // the program holds no Future of it any more
  };
  // A task's result stayed on its server: its bytes are fetched for a Future the program still
  // holds (directly from the server, else through the master), or it is let go.
  void complete_held(Completion& completion);
  asio::awaitable<void> fetch_held(Completion completion);
  // Test only (common/test_hooks.hpp): returns once the file `gate` exists (at most 2 minutes;
  // at once when `gate` is empty).
  asio::awaitable<void> wait_for_test_gate(const std::string& gate);
  // The direct fetch failed: the master asks the holding server (FetchResult by task id).
  void fetch_held_through_master(Completion completion, std::string why);
  void finish_held(Completion& completion, const std::string& outcome);
  // Lets the server free the held result once no Future and no unsent Dependent needs it
  // (under mu_).
  void release_held_if_unused(std::uint64_t task_id);
  std::unordered_map<std::uint64_t, HeldEntry> held_;  // by task id; guarded by mu_
  // One data connection per holding server, kept open and shared by the fetches (on the I/O
  // thread): dialled by the first fetch, the others queue until it is up.
  struct DataLink {
    std::shared_ptr<common::Connection> connection;
    bool dialing = false;
    std::vector<Completion> queued;                // waiting for the dial
    std::map<std::uint64_t, Completion> requests;  // sent, by request id
    // Pushed calls (pushed_calls.cc): tickets waiting for the dial and their tasks; calls sent
    // whose task has no result yet (ticket -> task id); completions of held results pushed
    // back on this link that have not arrived yet (by task id).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> queued_pushes;
    std::map<std::uint64_t, std::uint64_t> pushes;
    std::map<std::uint64_t, Completion> awaiting_results;
  };
  std::map<std::string, std::shared_ptr<DataLink>> data_links_;
  // Data ports whose dial failed lately, by address: until when they are not dialled again, and
  // why the dial failed.
  struct UnreachableDataPort {
    std::chrono::steady_clock::time_point until;
    std::string why;
  };
  std::map<std::string, UnreachableDataPort> unreachable_data_ports_;
  // Why `address` is not to be dialled now ("": it may be).
  std::string data_port_unreachable(const std::string& address);
  // The link to `address`, dialled if there is none; its queued work is sent once it is up,
  // or goes through the master if the dial fails.
  std::shared_ptr<DataLink> data_link(const std::string& address);
  asio::awaitable<void> dial_data_link(std::string address, std::shared_ptr<DataLink> link);
  void send_fetch(DataLink& link, Completion completion);
  // ---- pushed calls (pushed_calls.cc, docs/protocol.md#pushed-calls) ----
  // Calls of at least this many bytes are pushed (JobOpened.push_threshold; 0: none).
  std::atomic<std::uint64_t> push_threshold_{0};
  void on_call_tickets(const wire::CallTickets& tickets);
  asio::awaitable<void> push_when_gate_opens(wire::CallTickets tickets);
  void send_push(DataLink& link, std::uint64_t ticket, std::uint64_t task_id);
  void push_through_master(std::uint64_t ticket, std::uint64_t task_id);
  std::shared_ptr<const std::string> pushed_call_of(std::uint64_t task_id);
  void on_pushed_result(DataLink& link, wire::PushedResult& result);
  // A held result that was pushed back: completed now if its bytes came, or when they come.
  bool complete_pushed(Completion& completion);
  // The link closed: pushed calls without a result go through the master, awaited results
  // are fetched through it.
  void data_link_lost(DataLink& link, const std::string& reason);
  // The tasks' results came: their links no longer expect anything for them (unless a held
  // outcome pushed back is still awaited).
  void forget_pushes(std::vector<std::uint64_t> task_ids);
  // Held outcomes pushed back before their task's result came from the master (by task id).
  std::unordered_map<std::uint64_t, std::string> pushed_outcomes_;
  bool push_gate_passed_ = false;  // test hook push_gate: opened once (I/O thread)
  void on_data_message(const std::shared_ptr<DataLink>& link, wire::Envelope& message);
  void on_data_closed(const std::string& address, const std::shared_ptr<DataLink>& link,
                      const std::string& reason);
  // Requests to the master awaiting a reply, by request id (on the I/O thread).
  std::map<std::uint64_t, std::function<void(wire::Envelope&)>> master_requests_;
  std::uint64_t next_master_request_ = 1000;
  // A task of a max_in_flight call site has left the wire: its slot goes to the next held one.
  void free_slot(Pending& pending);  // under mu_
  void complete_all(std::vector<Completion>& done);
  void print_output(const wire::TaskOutput& output);
  void cancel(std::uint64_t task_id);
  void schedule_flush();  // under mu_
  void flush();           // on the I/O thread
  void keep_alive();
  void fail_everything(const std::string& why);
  void stop();

  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread io_thread_;
  std::unique_ptr<EmbeddedCluster> embedded_;
  // What this program's image needs (dependency_check not off; docs/dependencies.md), sent
  // with OpenJob so the master compares it with each server.
  std::unique_ptr<wire::ProgramNeeds> needs_;
  // The job's own packages (clupy.client.dependency.yaml), sent with OpenJob; init waits while
  // servers install them, as long as they report progress.
  std::vector<wire::DependencyPackage> job_packages_;
  // The libraries it ships (the same file's libraries:), read whole at init so that the bytes
  // sent are the bytes hashed; uploaded when the master asks (LibraryUploadRequest).
  struct ShippedLibrary {
    wire::DependencyLibrary description;  // name, SHA-256, size
    std::string source;                   // the file it was read from
    std::string bytes;
  };
  std::vector<ShippedLibrary> job_libraries_;
  std::atomic<std::int64_t> last_package_progress_ms_{0};  // steady clock; 0: none yet
  std::int64_t open_job_sent_ms_ = 0;                      // steady clock; on the I/O thread
  std::map<std::string, std::chrono::steady_clock::time_point> package_progress_logged_;
  // In job_dependencies.cc.
  void load_job_packages(const common::ClientConfig& config);
  void load_job_libraries(const std::vector<deps::ClientLibrary>& libraries);
  void upload_libraries(const wire::LibraryUploadRequest& request);
  void report_job_packages(const wire::JobPackagesState& state);
  // For a program no server can start: how to ship the missing libraries this machine has and
  // no package provides (clupy.client.dependency.yaml's libraries:); "" when there are none.
  static std::string shipping_hint(const wire::ProgramVerdicts& verdicts);
  // Logs what the master says of the servers against this program's needs.
  void report_verdicts(const wire::ProgramVerdicts& verdicts);
  std::shared_ptr<common::Connection> connection_;
  // The master we talk to; set at connect() and by adopt() on the I/O thread, read by any.
  void set_master(std::string url, const common::PeerIdentity& master);
  mutable std::mutex master_mu_;
  std::string master_url_;          // guarded by master_mu_
  wire::ClusterServices services_;  // guarded by master_mu_
  // The master holds tasks for their inputs (protocol 1.3): false, this client waits for every
  // input itself and sends the call with the values in it.
  std::atomic<bool> master_takes_inputs_{true};
  // With a zk:// master URL: where the elected master is published, how to dial it again, and
  // the fencing token of the master we are connected to.
  std::unique_ptr<common::MasterLocator> locator_;
  common::DialOptions dial_options_;
  std::int64_t master_token_ = 0;
  std::chrono::milliseconds failover_timeout_{60'000};
  std::string image_path_, image_sha256_, image_name_;
  asio::steady_timer keepalive_timer_{io_};
  std::chrono::milliseconds keepalive_interval_{20'000};

  WorkerOutput worker_output_{[](bool is_stderr, std::string_view text) {
    std::FILE* stream = is_stderr ? stderr : stdout;
    std::fwrite(text.data(), 1, text.size(), stream);
    std::fflush(stream);
  }};

  std::mutex mu_;
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::vector<wire::TaskSpec> outbox_;
  std::vector<std::uint64_t> cancel_outbox_;
  std::vector<std::uint64_t> release_outbox_;
  bool flush_posted_ = false;
  bool connected_ = false;
  bool reconnecting_ = false;  // between masters: submissions wait in the outbox
  std::string disconnect_reason_;
  std::uint64_t next_task_id_ = 1;
  SubmissionWindow window_;  // outstanding tasks, at most the master's client_window
  std::size_t max_frame_size_ = common::kDefaultMaxFrameSize;
  // Set under mu_ by stop(); read without it on the I/O thread (fail_over, on_closed).
  std::atomic<bool> stopped_{false};
};

}  // namespace clupy::client
