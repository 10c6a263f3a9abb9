// A peer that speaks the real protocol to a real daemon over a real TCP connection (a master's
// port, or a server's data port: both run the same handshake), but sends whatever a test tells
// it to: raw bytes, any frame, any message before or after a genuine token handshake. Blocking
// and single-threaded, so a test reads as the exchange it provokes. Reusable for every message
// type: a new message gets its hostile test by building the envelope and calling send().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "clupy.pb.h"
#include "common/frame.hpp"

namespace clupy::test {

class HostilePeer {
 public:
  // Connects to 127.0.0.1:port (no handshake yet).
  explicit HostilePeer(int port);
  ~HostilePeer();
  HostilePeer(const HostilePeer&) = delete;
  HostilePeer& operator=(const HostilePeer&) = delete;

  bool connected() const { return fd_ >= 0 && connected_; }

  // The opening exchange with `token` (the cluster token's text). True when the daemon
  // answered Accepted; `refusal` (if given) gets the Refused message otherwise.
  bool handshake(const std::string& token, wire::Role role,
                 const std::string& peer_name = "hostile", std::string* refusal = nullptr);

  void send_bytes(std::string_view bytes);
  // One frame holding `message` (any size up to 4 GiB: no limit is applied here).
  void send(const wire::Envelope& message);

  // The next message within `timeout`; nullopt when none arrived or the daemon closed.
  std::optional<wire::Envelope> receive(std::chrono::milliseconds timeout);
  // Messages until one satisfies `wanted` (others are dropped); nullopt at the timeout or close.
  std::optional<wire::Envelope> receive_until(
      const std::function<bool(const wire::Envelope&)>& wanted, std::chrono::milliseconds timeout);
  // True when the daemon closes the connection within `timeout` (messages before are dropped).
  bool closed_by_daemon_within(std::chrono::milliseconds timeout);
  void close();

  // ---- Conveniences for the usual opening moves ----
  // OpenJob for an image of `size` bytes; returns JobOpened, or nullopt (then `error` holds an
  // ErrorReply's message when one came).
  std::optional<wire::JobOpened> open_job(const std::string& sha256, std::uint64_t size,
                                          const std::string& client_name = "hostile-client",
                                          std::string* error = nullptr);
  // Uploads the file at `path` as image `sha256` in 1 MiB chunks, stopping after `max_chunks`.
  void upload(const std::string& path, const std::string& sha256,
              std::size_t max_chunks = SIZE_MAX);
  // SubmitTasks with one task per id, each carrying `call` and requiring label hostile=never
  // when `unrunnable` (no server has it, so they stay queued).
  void submit(const std::vector<std::uint64_t>& task_ids, const std::string& call,
              bool unrunnable = false, std::uint64_t job_id = 0);

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;  // the daemon closed the connection
  bool broken_ = false;  // the daemon sent bytes that do not decode as frames
  common::FrameDecoder decoder_{std::size_t{1} << 30};
};

// The cluster token in `token_file`.
std::string read_token(const std::string& token_file);
// The raw SHA-256 of a file.
std::string file_sha256(const std::string& path);

}  // namespace clupy::test
