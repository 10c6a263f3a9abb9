// The master's scheduler: per-client queues, reservations of servers (the seed's server_count),
// fair round-robin dispatch between clients, retries of tasks lost with a server, results
// routed back. Pure bookkeeping: it talks to the world only through the Outbox, so tests drive
// it directly. Not thread-safe: owned by the master's io_context thread.
#pragma once

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "clupy.pb.h"
#include "clupy/errors.hpp"
#include "master/label_sets.hpp"
#include "master/registry.hpp"
#include "master/slot_table.hpp"
#include "master/table_allocator.hpp"

namespace clupy::master {

using SessionId = std::uint64_t;

struct SchedulerConfig {
  std::uint32_t default_server_count = 0;  // for tasks asking 0 servers; 0 = any server
  std::uint32_t window = 65536;            // tasks a client may have outstanding
  std::int32_t default_retries = 3;
  std::uint32_t assign_ahead = 1;  // tasks assigned per worker slot (1 = no queueing on servers)
  // Bytes of calls kept to make held results again (lineage); past it, a new held result keeps
  // no call and fails what needs it with kLost if its server is lost.
  std::uint64_t lineage_memory = std::uint64_t{256} << 20;
};

// Where a held result lies: the holding server's session and the reference.
struct HeldLocation {
  SessionId server = 0;
  wire::ResultRef ref;
};

// The answer to a program's fetches of a held result that waited for it to be made again
// (Scheduler::fetch_held): where it is held now, or else its outcome or failure.
struct FetchAnswer {
  SessionId client = 0;
  std::uint64_t client_task_id = 0;
  std::vector<std::uint64_t> request_ids;
  std::optional<HeldLocation> location;
  wire::ResultBytes bytes;  // when there is no location
};

// Where the scheduler's messages go. assign and deliver may take the batch's contents or leave
// them: the scheduler clears the batch afterwards and fills the same messages again next time,
// so a steady stream of tasks does not allocate a message per task.
class Outbox {
 public:
  virtual void assign(SessionId server, wire::AssignTasks& tasks) = 0;
  virtual void cancel(SessionId server, wire::CancelAssignments&& tasks) = 0;
  virtual void deliver(SessionId client, wire::TaskResults& results) = 0;
  // Held results nothing needs any more (protocol 1.4): the server may drop them.
  virtual void free_results(SessionId /*server*/, wire::FreeResults&& /*results*/) {}
  // Fetches that waited for a lost held result to be made again get their answer.
  virtual void answer_fetches(FetchAnswer&& /*answer*/) {}
  // Pushed calls (protocol 1.5): where the client's tasks were placed, for it to push the calls.
  virtual void call_tickets(SessionId /*client*/, wire::CallTickets& /*tickets*/) {}

 protected:
  virtual ~Outbox() = default;
};

// Totals since the master started, for /metrics.
struct SchedulerCounters {
  std::uint64_t submitted = 0;
  std::uint64_t succeeded = 0;  // results that carry the worker's outcome (value or exception)
  std::uint64_t failed = 0;     // crashes, timeouts, cancellations, losses
  std::uint64_t rerun = 0;      // tasks requeued after their server was lost
  // Futures as arguments (docs/protocol.md#futures-as-arguments).
  std::uint64_t inputs_spliced = 0;          // input values put into dependents' calls
  std::uint64_t values_withheld = 0;         // results whose value the client had released
  std::uint64_t result_bytes_delivered = 0;  // outcome bytes sent to clients
  // Held results (docs/protocol.md#held-results).
  std::uint64_t result_bytes_received = 0;  // outcome bytes that came from servers
  std::uint64_t results_held = 0;           // results that stayed on their servers
  std::uint64_t inputs_referenced = 0;      // held results named in dependents' assignments
  std::uint64_t results_freed = 0;          // held results the master told servers to drop
  std::uint64_t results_lost = 0;           // held results lost with their servers
  std::uint64_t results_recomputed = 0;     // reruns of producers of lost held results
  // Pushed calls (docs/protocol.md#pushed-calls).
  std::uint64_t call_tickets = 0;         // placements of tasks whose call the client pushes
  std::uint64_t calls_missing = 0;        // pushed calls that never reached their server
  std::uint64_t call_bytes_received = 0;  // call bytes that came in SubmitTasks
  std::uint64_t call_bytes_pushed = 0;    // call bytes the programs pushed to servers themselves
};

// A task that finished (a result, a failure the master decided, or a cancellation), as the
// scheduler reports it to its TaskObserver. The references live for the call only.
struct FinishedTask {
  std::uint64_t job_id = 0;
  std::uint64_t client_task_id = 0;
  const std::string& client_name;
  const std::string& call;       // the encoded call (detail::serialize_call); "" when pushed
  const std::string& server_id;  // "" when it never ran or its server was lost
  Clock::duration ran{};         // from its assignment to its result; 0 when it never ran
  const wire::TaskResult& result;
  std::string_view function_name = {};  // a pushed call's function ("": read it from `call`)
};

// Who watches tasks go by (the dashboard's telemetry). Called on the scheduler's thread, inside
// its calls: it must not call back into the scheduler.
class TaskObserver {
 public:
  // A task was assigned to a server after waiting `waited` since it was queued.
  virtual void task_dispatched(Clock::duration waited) = 0;
  virtual void task_finished(const FinishedTask& task) = 0;

 protected:
  ~TaskObserver() = default;
};

// A client's job as the dashboard lists it.
struct ClientSummary {
  SessionId session = 0;
  std::uint64_t job_id = 0;
  std::string name;        // host:pid
  std::string image_name;  // the program
  std::size_t outstanding = 0;
  std::vector<std::string> reserved;  // servers it holds, in order of reservation
};

class Scheduler {
 public:
  // Time is read from `clock` (measured rates, how long tasks waited and ran) and, where a
  // caller has it at hand, given as `now`.
  Scheduler(Registry& registry, Outbox& outbox, SchedulerConfig config,
            const base::Clock& clock = base::Clock::real());

  // ---- clients ----
  std::uint64_t open_job(SessionId client, const std::string& client_name,
                         const std::string& image_sha256, const std::string& image_name,
                         bool image_ready, Clock::time_point now);
  // The job ships libraries from its client: its assignments name their set
  // (Assignment.library_set), so that servers start its workers with that set's folder.
  void set_library_set(SessionId client, std::string digest);
  // The image arrived (or was already there): jobs waiting for it may run.
  void image_ready(const std::string& image_sha256);
  // The image cannot be had: fail every queued task of jobs that need it.
  void image_failed(const std::string& image_sha256, const std::string& reason);
  // Tasks whose id the client already uses for an unfinished task, past the client's window,
  // or naming another job are refused (a kProtocol result each); the rest are queued.
  void submit(SessionId client, wire::SubmitTasks& tasks, Clock::time_point now);
  void cancel(SessionId client, const wire::CancelTasks& tasks);
  // The client holds no future of these tasks: when they succeed, their value is not sent
  // (value_withheld); tasks waiting for them still get it.
  void release_results(SessionId client, const wire::ReleaseResults& release);
  // Successful outcomes of the client's tasks of at least `bytes` stay on their servers (the
  // client speaks protocol 1.4; 0: never). Set after open_job.
  void set_hold_threshold(SessionId client, std::uint64_t bytes);
  // Where a held result of the client's task lies; nullopt when it is not held (freed, or lost
  // with its server).
  std::optional<HeldLocation> held_result(SessionId client, std::uint64_t client_task_id) const;
  // A program's fetch (request `request_id`) of the held result of its task: where it lies; or,
  // when it was lost with its server, `waiting` while its producer runs again (the answer then
  // comes through Outbox::answer_fetches; call dispatch()); or why it cannot be had.
  struct FetchPlan {
    std::optional<HeldLocation> location;
    bool waiting = false;
    std::string failure;
  };
  FetchPlan fetch_held(SessionId client, std::uint64_t client_task_id, std::uint64_t request_id);
  // A pushed call the client sent through the master (its data connection failed): the server
  // its task runs on under `ticket`, and the master's id of the task; nullopt when the task no
  // longer waits there for it (finished, cancelled, placed again).
  struct PushedCallRoute {
    SessionId server = 0;
    std::uint64_t task_id = 0;
  };
  std::optional<PushedCallRoute> pushed_call_route(SessionId client, std::uint64_t client_task_id,
                                                   std::uint64_t ticket) const;
  void client_seen(SessionId client, Clock::time_point now);
  // Drops the client's queued tasks and releases its servers; running tasks finish unseen.
  // Returns the client's job id, if it had opened one.
  std::optional<std::uint64_t> client_gone(SessionId client);

  // ---- servers ----
  void server_available(const std::string& server_id, SessionId session);
  // Its running tasks go back to the front of their queues (or fail when out of retries).
  void server_lost(const std::string& server_id);
  // The server takes no new tasks (its reservations move to others) and hands back `handed_back`,
  // tasks it had not started: they go to the front of their queues, no retry counted. Returns
  // true the first time for this server.
  bool server_draining(const std::string& server_id,
                       const google::protobuf::RepeatedField<std::uint64_t>& handed_back);
  void results(const std::string& server_id, wire::TaskResults& results);
  // A held server takes no new tasks (its dependencies are not satisfied, or are being synced);
  // what it runs finishes. Releasing it makes it eligible again at the next dispatch.
  void set_server_held(const std::string& server_id, bool held);
  bool server_held(const std::string& server_id) const;
  // Why none of a client's tasks go to a server; each reason is set and cleared on its own.
  enum class Refusal : std::uint8_t {
    kProgram = 1,   // its program cannot run there, or has not been compared with it yet
    kPackages = 2,  // the job's own packages are not (yet) installed there
  };
  void set_refused(SessionId client, const std::string& server_id, bool refused,
                   Refusal reason = Refusal::kProgram);

  // Releases the reservations of clients silent for longer than `ttl`.
  void expire_reservations(Clock::time_point now, std::chrono::milliseconds ttl);
  // Assigns queued tasks to free slots, then flushes what it produced to the Outbox.
  void dispatch();

  // Who gets a task's output: the client session and the client's task id, if still wanted
  // and the task is assigned to `server_id` (a server speaks only for its own tasks).
  std::optional<std::pair<SessionId, std::uint64_t>> owner_of(std::uint64_t task_id,
                                                              const std::string& server_id) const;

  std::size_t queued() const { return queued_; }
  // Tasks waiting for their inputs (futures passed as arguments) to finish.
  std::size_t waiting() const { return waiting_.size(); }
  // Tasks known (queued, running, or running for a client that left).
  std::size_t tasks() const { return tasks_.size(); }
  // Distinct label requirements among them.
  std::size_t label_sets() const { return label_sets_.size(); }
  const SchedulerCounters& counters() const { return counters_; }
  // Bytes of the held results the master knows of now (on their servers).
  std::uint64_t held_bytes() const { return held_bytes_; }
  // Producers' calls kept to make held results again (lineage), and their bytes.
  std::size_t lineage_calls() const { return lineage_calls_; }
  std::uint64_t lineage_bytes() const { return lineage_bytes_; }
  std::size_t running() const { return running_; }
  std::size_t clients() const { return clients_.size(); }
  const SchedulerConfig& config() const { return config_; }

  // ---- for the dashboard ----
  void set_observer(TaskObserver* observer) { observer_ = observer; }
  // Job ids continue from here (the master keeps them unique across its restarts).
  void set_next_job_id(std::uint64_t next) { next_job_id_ = std::max(next_job_id_, next); }
  std::uint64_t next_job_id() const { return next_job_id_; }
  // The job the client opened; 0 when none.
  std::uint64_t job_of(SessionId client) const;
  bool draining(const std::string& server_id) const;
  std::vector<ClientSummary> client_summaries() const;

 private:
  using TaskId = std::uint64_t;  // a SlotTable id
  // Tables that grow with the tasks held (see TableAllocator).
  template <class Key, class Value>
  using TaskMap = boost::unordered_flat_map<Key, Value, boost::hash<Key>, std::equal_to<Key>,
                                            TableAllocator<std::pair<const Key, Value>>>;
  template <class Key>
  using TaskSet =
      boost::unordered_flat_set<Key, boost::hash<Key>, std::equal_to<Key>, TableAllocator<Key>>;
  struct Server {
    SessionId session = 0;
    std::uint32_t base_slots = 1;  // capacity x assign_ahead
    // Tasks it may hold: base_slots, raised to about kAheadHorizon of work for a server that
    // finishes tasks quickly (see adapt_slots).
    std::uint32_t slots = 1;
    Clock::time_point rate_since{};  // the current rate measurement began
    std::uint32_t finished_since = 0;
    TaskSet<TaskId> running;
    std::map<std::string, std::string> labels;
    std::uint32_t holders = 0;   // clients holding a reservation
    std::uint32_t minor = 0;     // its protocol minor version
    std::string data_address;    // where clients push calls ("host:port"; "": through the master)
    bool draining = false;       // takes no new tasks (server_draining)
    bool held = false;           // takes no new tasks until released (set_server_held)
    wire::AssignTasks outgoing;  // assigned by this dispatch; reused (see flush_batch)
  };

  using ServerSlot = std::map<std::string, Server>::value_type;

  // What the master keeps of a task: about 80 bytes plus its call's bytes. Queued tasks are most
  // of the master's memory (docs/performance.md), so nothing here is per task that can be
  // shared: the labels are an id into label_sets_, the server a pointer to its entry.
  struct Task {
    std::uint64_t client_task_id = 0;
    SessionId client = 0;  // 0: the client left while the task ran
    std::string call;
    ServerSlot* server = nullptr;  // where it runs; nullptr while queued
    std::uint32_t server_count = 0;
    std::uint32_t timeout_ms = 0;
    std::int32_t retries_left = 0;
    std::uint32_t attempts = 0;
    LabelSets::Id labels = LabelSets::kNone;
    // Inputs (futures passed as arguments) not finished yet; queued when it reaches 0.
    std::uint32_t inputs_left = 0;
    bool held_inputs = false;  // some inputs are held results (held_inputs_)
    bool remakes = false;      // it makes a lost held result again (lineage; see recompute)
    bool pushed = false;       // its call stays in the client until placed (pushed_)
    // While queued: when it was queued; while it runs: when it was assigned (dashboard figures).
    Clock::time_point since{};
  };
  // A held input of a task: put into its call by the server that runs it.
  struct HeldSlot {
    std::uint64_t input = 0;  // the client's task id, a key of Client::held
    std::uint32_t position = 0;
    std::int32_t index = -1;
  };
  // How a held result is made again (lineage): its producer's call as it was assigned (plain
  // inputs' values in it, its held inputs' places nil) and its options.
  struct Recipe {
    std::string call;
    std::vector<HeldSlot> held_inputs;
    std::uint32_t server_count = 0;
    std::uint32_t timeout_ms = 0;
    std::int32_t retries_left = 0;
    LabelSets::Id labels = LabelSets::kNone;  // a reference of its own
  };
  // A result a server holds (or held) for a finished task of a client. The entry lives while
  // anything needs the bytes (users, the program's hold, waiting fetches, a rerun) or a kept
  // recipe names it (lineage_users); the bytes are freed on their server as soon as only
  // recipes name it.
  struct HeldResult {
    wire::ResultRef ref;
    std::uint32_t users = 0;          // tasks bound to it (bind_held_input) that have not ended
    bool client_holds = true;         // the program has a Future of it (no ReleaseResults yet)
    bool present = true;              // the bytes are on ref's server (not freed, not lost)
    bool rerunning = false;           // its producer runs again (a task with `remakes`)
    std::uint32_t lineage_users = 0;  // recipes of other entries that name it
    std::string gone;                 // why it is not present ("" while it is, or freed)
    std::unique_ptr<Recipe> recipe;   // nullptr: it cannot be made again (no_recipe says why)
    const char* no_recipe = "its call was not kept";
    std::vector<std::uint64_t> fetches;  // program fetches waiting for the rerun
  };
  // What the master keeps of a task whose call the client pushes (its `call` is empty).
  struct PushedCall {
    std::uint64_t ticket = 0;  // of its current placement; 0 while queued
    std::string function_name;
  };
  struct Client {
    std::uint64_t job_id = 0;
    std::string name;
    std::string image_sha256;
    std::string image_name;
    std::string library_set;  // deps::library_set_digest of the libraries it ships; "": none
    bool image_ready = false;
    std::string image_error;  // set when the image cannot be had: new tasks fail at once
    // Queued tasks in order. A task cancelled while queued leaves its id behind (removing it
    // would cost a scan); ids of tasks no longer queued are skipped when they reach the front.
    std::deque<TaskId> queue;
    std::vector<ServerSlot*> reserved;  // in order of reservation
    TaskMap<std::uint64_t, TaskId> by_client_id;
    Clock::time_point last_seen;
    // Servers that get none of its tasks, with the Refusal bits that keep them out.
    boost::unordered_flat_map<std::string, std::uint8_t> refused;
    wire::TaskResults outgoing;  // finished since the last dispatch; reused (see flush_batch)
    wire::CallTickets tickets;   // placements of pushed calls since the last dispatch
    // Client task ids of the tasks waiting for each unfinished task of this client.
    TaskMap<std::uint64_t, std::vector<std::uint64_t>> dependents;
    // Unfinished tasks whose value the client released (release_results).
    TaskSet<std::uint64_t> released;
    // Held results (protocol 1.4): bytes from which outcomes stay on their servers (0: none),
    // and the finished tasks whose results are held, by client task id.
    std::uint64_t hold_threshold = 0;
    TaskMap<std::uint64_t, HeldResult> held;
  };
  // A task waiting for its inputs: where each input's value goes in its call.
  struct InputSlot {
    std::uint64_t input = 0;  // the client's task id
    std::uint32_t position = 0;
    std::int32_t index = -1;
    std::string value;  // msgpack, once the input succeeded (and is not held)
    bool filled = false;
    bool held = false;  // its value is a held result: the server that runs the task puts it in
  };
  // Binds a waiting task's slot to the held result it names (counts a user of it).
  void bind_held_input(Client& client, TaskId id, Task& task, const InputSlot& slot);
  // Every input of a waiting task is there: the values go into the call and it is queued.
  // False when it failed instead.
  bool inputs_complete(Client& client, TaskId id, Task& task);
  void keep_held(Client& client, TaskId id, Task& task, const wire::TaskResult& result);
  // ---- pushed calls (pushed_calls.cc) ----
  // A submitted task whose call the client pushes (its spec was checked).
  void accept_pushed(TaskId id, Task& task, wire::TaskSpec& spec);
  // The task was just assigned: a new ticket, in the assignment and for the client.
  void issue_ticket(SessionId client_id, Client& client, TaskId id, const ServerSlot& server,
                    wire::Assignment& assignment);
  // Its call never reached its server: placed again (a retry), or failed kLost when none is left.
  void call_missing(TaskId id, Task& task, const std::string& server_id);
  // Frees the held result's bytes when nothing needs them, and forgets it when no recipe names
  // it either (dropping its own recipe, which may forget its inputs in turn).
  void settle(Client& client, std::uint64_t client_task_id);
  // Forgets a recipe: the held results it names may be forgotten in turn.
  void drop_recipe(Client& client, std::unique_ptr<Recipe> recipe);
  // ---- lineage (lineage.cc) ----
  // Runs the producer of a held result that is not present again, unless it already runs
  // (its own lost inputs first). False, with `why`, when it cannot be made again.
  bool recompute(SessionId client_id, Client& client, std::uint64_t client_task_id,
                 std::string& why);
  // A rerun finished: the result is held again (or its value, or failure, goes to what needs it).
  void remade(SessionId client_id, Client& client, Task& task, wire::TaskResult& result);
  // A task that is not running and was bound to `lost` held results waits for their reruns.
  void rewait(Client& client, TaskId id, bool queued, const std::vector<std::uint64_t>& lost);
  // Fails the tasks waiting for a client task's result with kLost.
  void fail_waiters(Client& client, std::uint64_t client_task_id, const std::string& message);
  // A running task with held inputs failed kLost (its server could not fetch an input): it
  // waits for the lost inputs' reruns, or runs again. False when it fails after all.
  bool retry_after_input_loss(TaskId id, Task& task);
  std::string lost_message(const Client& client, std::uint64_t input, const std::string& why);
  void free_on_server(const wire::ResultRef& ref);
  void flush_frees();
  // The task no longer needs its held inputs (it finished, failed or was dropped).
  void unbind_held_inputs(TaskId id);
  void free_all_held(Client& client);
  // The server that holds most of the task's held input bytes, if it is connected.
  ServerSlot* holder_of_inputs(Client& client, TaskId id);
  void add_held_inputs(Client& client, TaskId id, wire::Assignment& assignment);
  // The server's held results are gone: the tasks that need them and do not run wait for their
  // producers to run again (lineage), or fail kLost when they cannot.
  void held_results_lost(const std::string& server_id);
  // Whether every input of a submitted task is an unfinished task of the client; if not, the
  // task is answered inputs_gone and not stored. add_waiting then keeps it until they finish.
  bool inputs_known(SessionId client_id, Client& client, const wire::TaskSpec& spec);
  void add_waiting(SessionId client_id, Client& client, TaskId id, const wire::TaskSpec& spec);
  // A task of `client` finished: its dependents get its value (and are queued once complete),
  // or fail with kDependency.
  void feed_dependents(Client& client, const Task& input, const wire::TaskResult& result);
  ServerSlot* pick_server(Client& client, TaskId task_id, const Task& task);
  void reserve(Client& client, std::size_t count);
  void release(Client& client);
  void finish(TaskId task_id, wire::TaskResult&& result);
  void observe_finish(TaskId task_id, const Task& task, const Client* client,
                      const wire::TaskResult& result);
  // Sizes a server's slots to its recent rate: `finished` tasks just came back from it.
  void adapt_slots(Server& server, std::size_t finished);
  void fail(TaskId task_id, FailureKind kind, const std::string& message);
  // Answers a submitted task the master will not take (a failure of `kind` with `message`)
  // without storing it.
  void refuse(SessionId client_id, Client& client, std::uint64_t client_task_id, FailureKind kind,
              const std::string& message);
  // The refusals of submit, out of its loop (cold).
  [[gnu::cold, gnu::noinline]] void refuse_batch(SessionId client_id, Client& client,
                                                 const wire::SubmitTasks& tasks);
  [[gnu::cold, gnu::noinline]] void refuse_over_window(SessionId client_id, Client& client,
                                                       std::uint64_t client_task_id);
  [[gnu::cold, gnu::noinline]] void refuse_reused_id(SessionId client_id, Client& client,
                                                     std::uint64_t client_task_id);
  // Erases a task and what it holds (its label set reference).
  void forget(TaskId task_id, Task& task);
  // The first task still queued in the client's queue (dropping ids of tasks that are not).
  std::optional<TaskId> front_queued(Client& client);

  Registry& registry_;
  Outbox& outbox_;
  const base::Clock& clock_;
  SchedulerConfig config_;
  SlotTable<Task> tasks_;
  LabelSets label_sets_;
  std::map<SessionId, Client> clients_;
  std::map<std::string, Server> servers_;
  std::deque<SessionId> round_robin_;
  std::vector<ServerSlot*> assigning_;  // servers whose outgoing batch has tasks
  std::map<SessionId, wire::CancelAssignments> pending_cancel_;
  std::vector<SessionId> delivering_;                    // clients whose outgoing batch has results
  TaskMap<TaskId, std::vector<InputSlot>> waiting_;      // see add_waiting
  TaskMap<TaskId, std::vector<HeldSlot>> held_inputs_;   // tasks' held inputs (bind_held_input)
  std::map<SessionId, wire::FreeResults> pending_free_;  // by server session (flush_frees)
  TaskMap<TaskId, PushedCall> pushed_;                   // tasks whose call the client pushes
  std::vector<SessionId> ticketing_;                     // clients whose tickets batch has some
  std::uint64_t next_ticket_ = 1;
  std::uint64_t held_bytes_ = 0;
  std::size_t lineage_calls_ = 0;
  std::uint64_t lineage_bytes_ = 0;
  std::uint64_t next_job_id_ = 1;
  std::size_t running_ = 0;
  std::size_t queued_ = 0;  // tasks in clients' queues
  SchedulerCounters counters_;
  TaskObserver* observer_ = nullptr;
};

}  // namespace clupy::master
