#include "hostile_peer.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <vector>

#include "base/sha256.hpp"
#include "common/auth.hpp"
#include "common/version.hpp"

namespace clupy::test {

using Clock = std::chrono::steady_clock;

HostilePeer::HostilePeer(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

HostilePeer::~HostilePeer() { close(); }

void HostilePeer::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void HostilePeer::send_bytes(std::string_view bytes) {
  while (fd_ >= 0 && !bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the daemon closed: what the test checks next will show it
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void HostilePeer::send(const wire::Envelope& message) {
  std::string bytes;
  common::append_frame(message, bytes, std::string::npos);
  send_bytes(bytes);
}

std::optional<wire::Envelope> HostilePeer::receive(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  wire::Envelope message;
  while (true) {
    const auto status = decoder_.next(message);
    if (status == common::FrameDecoder::Status::kFrame) return message;
    if (status != common::FrameDecoder::Status::kNeedMore) {
      broken_ = true;  // the daemon sent what does not decode: nothing more can be read
      return std::nullopt;
    }
    if (closed_ || fd_ < 0) return std::nullopt;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100))) <= 0) continue;
    const std::span<char> space = decoder_.prepare(1 << 16);
    const ssize_t n = ::recv(fd_, space.data(), space.size(), 0);
    if (n <= 0) {
      closed_ = true;
      return std::nullopt;
    }
    decoder_.commit(static_cast<std::size_t>(n));
  }
}

std::optional<wire::Envelope> HostilePeer::receive_until(
    const std::function<bool(const wire::Envelope&)>& wanted, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto message = receive(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now() + std::chrono::milliseconds(1)));
    if (!message) return std::nullopt;
    if (wanted(*message)) return message;
  }
  return std::nullopt;
}

bool HostilePeer::closed_by_daemon_within(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!closed_ && !broken_ && fd_ >= 0 && Clock::now() < deadline)
    receive(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  return closed_;
}

bool HostilePeer::handshake(const std::string& token, wire::Role role, const std::string& peer_name,
                            std::string* refusal) {
  const std::string client_nonce = common::random_bytes(common::kNonceSize);
  wire::Envelope hello;
  common::fill_build_info(*hello.mutable_hello()->mutable_build());
  hello.mutable_hello()->set_role(role);
  hello.mutable_hello()->set_client_nonce(client_nonce);
  hello.mutable_hello()->set_peer_name(peer_name);
  send(hello);
  auto challenge = receive(std::chrono::seconds(10));
  if (!challenge || !challenge->has_challenge()) {
    if (refusal && challenge && challenge->has_refused()) *refusal = challenge->refused().message();
    return false;
  }
  wire::Envelope proof;
  proof.mutable_auth_proof()->set_mac(
      common::client_proof(token, challenge->challenge().server_nonce(), client_nonce));
  send(proof);
  auto answer = receive(std::chrono::seconds(10));
  if (answer && answer->has_accepted()) return true;
  if (refusal && answer && answer->has_refused()) *refusal = answer->refused().message();
  return false;
}

std::optional<wire::JobOpened> HostilePeer::open_job(const std::string& sha256, std::uint64_t size,
                                                     const std::string& client_name,
                                                     std::string* error) {
  wire::Envelope open;
  open.set_request_id(1);
  open.mutable_open_job()->set_image_sha256(sha256);
  open.mutable_open_job()->set_image_size(size);
  open.mutable_open_job()->set_image_name("hostile_program");
  open.mutable_open_job()->set_client_name(client_name);
  send(open);
  auto reply =
      receive_until([](const wire::Envelope& m) { return m.has_job_opened() || m.has_error(); },
                    std::chrono::seconds(10));
  if (reply && reply->has_job_opened()) return reply->job_opened();
  if (error && reply) *error = reply->error().message();
  return std::nullopt;
}

void HostilePeer::upload(const std::string& path, const std::string& sha256,
                         std::size_t max_chunks) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  std::uint64_t offset = 0;
  for (std::size_t chunk = 0; chunk < max_chunks && in; ++chunk) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    wire::Envelope message;
    auto* piece = message.mutable_image_chunk();
    piece->set_image_sha256(sha256);
    piece->set_offset(offset);
    piece->set_data(buffer.data(), got);
    piece->set_last(in.peek() == std::ifstream::traits_type::eof());
    send(message);
    offset += got;
    if (piece->last()) break;
  }
}

void HostilePeer::submit(const std::vector<std::uint64_t>& task_ids, const std::string& call,
                         bool unrunnable, std::uint64_t job_id) {
  wire::Envelope message;
  auto* batch = message.mutable_submit_tasks();
  batch->set_job_id(job_id);
  for (const std::uint64_t id : task_ids) {
    auto* task = batch->add_tasks();
    task->set_task_id(id);
    task->set_call(call);
    task->mutable_options()->set_retries(-1);
    if (unrunnable) (*task->mutable_options()->mutable_labels())["hostile"] = "never";
  }
  send(message);
}

std::string read_token(const std::string& token_file) {
  return common::read_token_file(token_file);
}

std::string file_sha256(const std::string& path) { return base::sha256_file(path).value(); }

}  // namespace clupy::test
