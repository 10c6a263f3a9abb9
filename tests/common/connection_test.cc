// A framed connection over real loopback TCP, both ends in this process: batches too large for
// one frame leave as several, and every part carries every header field of the batch.
#include "common/connection.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <future>

namespace clupy::common {
namespace {

using asio::ip::tcp;

constexpr std::size_t kSmallFrames = 64u << 10;

class ConnectionTest : public testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket client(io_), server(io_);
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    // The sender splits at 64 KiB; the receiver reads frames of any size the default allows.
    sender_ = std::make_shared<Connection>(Transport(std::move(client)), kSmallFrames);
    receiver_ = std::make_shared<Connection>(Transport(std::move(server)), kDefaultMaxFrameSize);
  }

  // Reads frames until `items_of` has counted `expected` items in them.
  template <class ItemsOf>
  std::vector<wire::Envelope> receive(std::size_t expected, ItemsOf items_of) {
    auto frames = asio::co_spawn(
        io_,
        [](std::shared_ptr<Connection> from, std::size_t wanted,
           ItemsOf count) -> asio::awaitable<std::vector<wire::Envelope>> {
          std::vector<wire::Envelope> parts;
          std::size_t items = 0;
          while (items < wanted) {
            parts.push_back(co_await from->read_frame());
            items += count(parts.back());
          }
          co_return parts;
        }(receiver_, expected, items_of),
        asio::use_future);
    while (frames.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      if (io_.run_one_for(std::chrono::seconds(10)) == 0) {
        ADD_FAILURE() << "the batch did not arrive";
        return {};
      }
    }
    return frames.get();
  }

  asio::io_context io_;
  std::shared_ptr<Connection> sender_, receiver_;
};

wire::Envelope assign_batch(int tasks, std::size_t call_bytes) {
  wire::Envelope batch;
  batch.set_request_id(41);
  batch.mutable_assign_tasks()->set_fencing_token(7);
  for (int i = 0; i < tasks; ++i) {
    auto* task = batch.mutable_assign_tasks()->add_tasks();
    task->set_task_id(i + 1);
    task->set_call(std::string(call_bytes, static_cast<char>('a' + i % 26)));
  }
  return batch;
}

void expect_assign_parts(const std::vector<wire::Envelope>& parts, int tasks) {
  ASSERT_GT(parts.size(), 1u) << "the batch was meant to be split";
  std::uint64_t next_id = 1;
  for (const auto& part : parts) {
    ASSERT_TRUE(part.has_assign_tasks());
    EXPECT_EQ(part.request_id(), 41u);
    EXPECT_EQ(part.assign_tasks().fencing_token(), 7) << "a part lost the batch's fencing token";
    for (const auto& task : part.assign_tasks().tasks()) EXPECT_EQ(task.task_id(), next_id++);
  }
  EXPECT_EQ(next_id, static_cast<std::uint64_t>(tasks) + 1) << "tasks lost or reordered";
}

auto assign_items = [](const wire::Envelope& e) {
  return static_cast<std::size_t>(e.assign_tasks().tasks_size());
};

TEST_F(ConnectionTest, SplitAssignTasksCarriesTheFencingTokenOnEveryPart) {
  sender_->send(assign_batch(40, 4000));  // 160 KB: more than two frames of 64 KiB
  expect_assign_parts(receive(40, assign_items), 40);
}

TEST_F(ConnectionTest, AttachedAssignTasksCarriesTheFencingTokenOnEveryPart) {
  sender_->enable_attachments();
  receiver_->enable_attachments();
  // Small calls share envelopes, large ones travel alone as attachments: both kinds of part.
  wire::Envelope batch = assign_batch(6, 100);
  batch.mutable_assign_tasks()->mutable_tasks(2)->set_call(std::string(kAttachmentThreshold, 'x'));
  batch.mutable_assign_tasks()->mutable_tasks(4)->set_call(std::string(kAttachmentThreshold, 'y'));
  sender_->send(std::move(batch));
  const auto parts = receive(6, assign_items);
  expect_assign_parts(parts, 6);
  EXPECT_EQ(parts.size(), 5u);  // [1 2] [3] [4] [5] [6]
}

TEST_F(ConnectionTest, SplitSubmitTasksCarriesTheJobOnEveryPart) {
  wire::Envelope batch;
  batch.set_request_id(9);
  batch.mutable_submit_tasks()->set_job_id(33);
  for (int i = 0; i < 40; ++i)
    batch.mutable_submit_tasks()->add_tasks()->set_call(std::string(4000, 'c'));
  sender_->send(batch);
  const auto parts = receive(40, [](const wire::Envelope& e) {
    return static_cast<std::size_t>(e.submit_tasks().tasks_size());
  });
  ASSERT_GT(parts.size(), 1u);
  for (const auto& part : parts) {
    EXPECT_EQ(part.request_id(), 9u);
    EXPECT_EQ(part.submit_tasks().job_id(), 33u);
  }
}

TEST_F(ConnectionTest, ResultTooLargeForAFrameBecomesAFailureInItsPart) {
  wire::Envelope batch;
  auto* small = batch.mutable_task_results()->add_results();
  small->set_task_id(1);
  small->set_outcome("fine");
  auto* huge = batch.mutable_task_results()->add_results();
  huge->set_task_id(2);
  huge->set_server_id("s");
  huge->set_outcome(std::string(kSmallFrames, 'z'));
  sender_->send(batch);
  const auto parts = receive(2, [](const wire::Envelope& e) {
    return static_cast<std::size_t>(e.task_results().results_size());
  });
  std::vector<wire::TaskResult> results;
  for (const auto& part : parts)
    for (const auto& r : part.task_results().results()) results.push_back(r);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].outcome(), "fine");
  EXPECT_EQ(results[1].task_id(), 2u);
  EXPECT_NE(results[1].failure().message().find("more than half of max_frame_size"),
            std::string::npos)
      << results[1].failure().message();
}

}  // namespace
}  // namespace clupy::common
