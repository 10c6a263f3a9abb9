// Writes the committed seed corpus of the fuzz targets (tests/fuzz/corpus/<name>/): real frames,
// handshake exchanges, serialized calls, configuration files and HTTP requests, each in the
// input format its target reads. Run from the fuzz build: fuzz_make_seeds <corpus folder>.
// Calls by name only: a call naming code by segment would hold this build's build-id.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "clupy/detail/call.hpp"
#include "common/batches.hpp"
#include "common/frame.hpp"
#include "common/version.hpp"

namespace {

std::map<std::string, double> weigh(std::vector<double> values, std::optional<double> scale) {
  std::map<std::string, double> out;
  for (std::size_t i = 0; i < values.size(); ++i) out[std::to_string(i)] = values[i] * *scale;
  return out;
}

}  // namespace

CLUPY_REMOTE(weigh);

namespace {

namespace fs = std::filesystem;
using clupy::wire::Envelope;

void write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string frame(const Envelope& message) {
  std::string out;
  clupy::common::append_frame(message, out);
  return out;
}

std::string attached_frame(Envelope message) {
  std::string attachment = std::move(*clupy::common::attachment_slot(message));
  clupy::common::attachment_slot(message)->clear();
  std::string out;
  clupy::common::append_attached_frame(message, attachment.size(), out);
  return out + attachment;
}

Envelope hello() {
  Envelope m;
  clupy::common::fill_build_info(*m.mutable_hello()->mutable_build());
  m.mutable_hello()->set_client_nonce(std::string(32, 'n'));
  m.mutable_hello()->set_role(clupy::wire::ROLE_CLIENT);
  m.mutable_hello()->set_peer_name("seed:1");
  return m;
}

std::string named_call() {
  return clupy::detail::serialize_call(
      clupy::detail::encode_call(&weigh, std::vector<double>{1.5, 2.5, 4.0}, 2.0));
}

Envelope submit_one(const std::string& call) {
  Envelope m;
  m.mutable_submit_tasks()->set_job_id(7);
  auto* task = m.mutable_submit_tasks()->add_tasks();
  task->set_task_id(1);
  task->set_call(call);
  return m;
}

Envelope assign_two(const std::string& call) {
  Envelope m;
  m.mutable_assign_tasks()->set_fencing_token(3);
  for (int i = 1; i <= 2; ++i) {
    auto* task = m.mutable_assign_tasks()->add_tasks();
    task->set_task_id(static_cast<std::uint64_t>(i));
    task->set_call(call);
  }
  return m;
}

Envelope results_one() {
  Envelope m;
  auto* result = m.mutable_task_results()->add_results();
  result->set_task_id(1);
  result->set_outcome(clupy::detail::serialize_outcome({true, "\x93\x01\x02\x03", {}}));
  return m;
}

void frame_decoder_seeds(const fs::path& dir) {
  const std::string prefix("\x00\x12\x34", 3), small_limit("\x01\x56\x78", 3);
  const std::string call = named_call();
  write(dir, "hello", prefix + frame(hello()));
  write(dir, "submit_attached", prefix + attached_frame(submit_one(call)));
  write(dir, "assign_two", prefix + frame(assign_two(call)));
  write(dir, "results_then_hello", prefix + frame(results_one()) + frame(hello()));
  write(dir, "small_limit", small_limit + attached_frame(submit_one(std::string(300, 'x'))));
  Envelope heartbeat;
  heartbeat.mutable_heartbeat();
  write(dir, "heartbeat_twice", prefix + frame(heartbeat) + frame(heartbeat));
}

void handshake_seeds(const fs::path& dir) {
  // Options: bit 0 the acceptor side, bit 1 a token, bit 2 the master on loopback.
  Envelope proof;
  proof.mutable_auth_proof()->set_mac(std::string(32, 'm'));
  write(dir, "acceptor_open_hello", "\x01" + frame(hello()));
  write(dir, "acceptor_token_hello_proof", "\x03" + frame(hello()) + frame(proof));
  Envelope old_hello = hello();
  old_hello.mutable_hello()->mutable_build()->set_protocol_major(0);
  write(dir, "acceptor_old_major", "\x01" + frame(old_hello));
  Envelope challenge;
  clupy::common::fill_build_info(*challenge.mutable_challenge()->mutable_build());
  challenge.mutable_challenge()->set_server_nonce(std::string(32, 's'));
  Envelope accepted;
  accepted.mutable_accepted()->set_session_id("seed-session");
  accepted.mutable_accepted()->set_fencing_token(2);
  write(dir, "connector_open", std::string(1, '\x04') + frame(challenge) + frame(accepted));
  write(dir, "connector_token_remote", std::string(1, '\x02') + frame(challenge) + frame(accepted));
  Envelope required = challenge;
  required.mutable_challenge()->set_auth_required(true);
  accepted.mutable_accepted()->set_server_mac(std::string(32, 'a'));
  write(dir, "connector_token_required",
        std::string(1, '\x06') + frame(required) + frame(accepted));
  Envelope refused;
  refused.mutable_refused()->set_reason(clupy::wire::Refused::AUTH_FAILED);
  refused.mutable_refused()->set_message("no");
  write(dir, "connector_refused", std::string(1, '\x06') + frame(refused));
}

void call_decoding_seeds(const fs::path& dir) {
  write(dir, "named_call", "\x01" + named_call());
  write(dir, "named_call_bad_arguments", "\x01" + clupy::detail::serialize_call([] {
                                           auto call = clupy::detail::encode_call(
                                               &weigh, std::vector<double>{1}, 1.0);
                                           call.arguments =
                                               "\x92\xa3"
                                               "abc\xc0";
                                           return call;
                                         }()));
  // Even first byte: the rest picks a template call and how to corrupt it.
  write(dir, "corrupt_0", std::string("\x00\x00\x00\x00\x00\x00\x00\x00", 8));
  write(dir, "corrupt_1", std::string("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b", 12));
  write(dir, "corrupt_2", std::string(1, '\x02') + std::string(40, '\xff'));
}

void config_seeds(const fs::path& dir) {
  // First byte: 0 master, 1 server, 2 client, 3 a duration and a size.
  write(dir, "master",
        std::string(1, '\0') +
            "bind: 127.0.0.1\nport: 0\nhttp_port: 8080\nhttp_auth: token\nidle_timeout: 5m\n"
            "image_store_size: 4GiB\nassign_ahead: 8\nlog_level: info\n"
            "tls:\n  enabled: false\n"
            "store:\n  redis: redis://127.0.0.1:6379/0\n  chunk_size: 1MiB\n"
            "coordination:\n  connect: 127.0.0.1:2181/clupy\n  session_timeout: 10s\n");
  write(dir, "master_store_embedded", std::string(1, '\0') + "store: embedded\n");
  write(dir, "server",
        "\x01master_url: zk://127.0.0.1:2181/clupy\ncapacity: 4\nlabels:\n  gpu: \"no\"\n"
        "registration_interval: 1s\ncache_dir: /tmp/cache\n");
  write(dir, "client",
        "\x02master_url: clupy://127.0.0.1:7878\nserver_count: 2\nconnect_timeout: 5s\n"
        "log_level: warn\n");
  write(dir, "client_bad_key", "\x02master_ulr: x\n");
  write(dir, "duration",
        "\x03"
        "1.5s");
  write(dir, "size",
        "\x03"
        "16MiB");
  write(dir, "service",
        "\x04name: wordcount\nbinary: ./wordcount\nentry_points: [count, top_words]\n"
        "port: 8080\nreplicas: 2\npackages: [libc6]\nmax_body: 1MiB\ntimeout: 5s\n"
        "auth: public\n");
  write(dir, "service_key",
        "\x04name: s\nbinary: /bin/true\nentry_points: [a]\nauth:\n  key_file: k\n");
}

void service_json_seeds(const fs::path& dir) {
  // First byte: the entry point (0 texts, 1 numbers, 2 shapes, 3 containers, 4 nothing).
  write(dir, "texts_array", std::string(1, '\0') + R"(["some text", null, ["a", "b"]])");
  write(dir, "texts_object", std::string(1, '\0') + R"({"text": "t", "words": []})");
  write(dir, "numbers", "\x01" + std::string(R"([-1, 2, 9007199254740993, 1.5e3, 255])"));
  write(dir, "shapes",
        "\x02" + std::string(R"({"p": {"x": 1, "y": 2}, "pair": [[0, 0], {"x": 3, "y": 4}],)") +
            R"( "raw": [-3, 18446744073709551615, [true, false]], "mixed": [1, "s", true]})");
  write(dir, "containers", "\x03" + std::string(R"([{"1": ["a", "b"], "-2": []}, [1, null, 3]])"));
  write(dir, "nothing", "\x04[]");
}

void master_http_seeds(const fs::path& dir) {
  write(dir, "status_token",
        "GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        "fuzz-master-http-token-0123456789\r\n\r\n");
  write(dir, "metrics_no_token", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  write(dir, "healthz", "GET /healthz HTTP/1.0\r\n\r\n");
  write(dir, "post", "POST /status HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  write(dir, "head_status", "HEAD /status HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n");
  write(dir, "chunked",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  write(dir, "login_form",
        "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 39\r\n\r\ntoken=fuzz-master-http-token-0123456789");
  write(dir, "dashboard_query_token",
        "GET /?token=fuzz%2Dmaster-http-token-0123456789&x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  write(dir, "api_cookie",
        "GET /api/dashboard?since=17 HTTP/1.1\r\nCookie: a=b; clupy_dashboard=00\r\n\r\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus folder>\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  frame_decoder_seeds(root / "frame_decoder");
  handshake_seeds(root / "handshake");
  call_decoding_seeds(root / "call_decoding");
  config_seeds(root / "config_parsers");
  master_http_seeds(root / "master_http");
  service_json_seeds(root / "service_json");
  return 0;
}
