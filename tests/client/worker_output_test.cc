// Worker output as the client prints it: whole lines, each prefixed with its server and task,
// however the pieces were cut on the way.
#include "client/worker_output.hpp"

#include <gtest/gtest.h>

#include <string>

namespace clupy::client {
namespace {

struct Printed {
  std::string out, err;
  WorkerOutput::Sink sink() {
    return [this](bool is_stderr, std::string_view text) { (is_stderr ? err : out) += text; };
  }
};

TEST(WorkerOutputTest, ALineSplitAcrossPiecesIsPrintedOnceWhole) {
  Printed printed;
  WorkerOutput output(printed.sink());
  output.add("s1", 7, false, "hel");
  output.add("s1", 7, false, "lo wor");
  EXPECT_EQ(printed.out, "");
  output.add("s1", 7, false, "ld\nsecond line\nthi");
  EXPECT_EQ(printed.out, "(s1 task 7) hello world\n(s1 task 7) second line\n");
  output.add("s1", 7, false, "rd\n");
  EXPECT_EQ(printed.out, "(s1 task 7) hello world\n(s1 task 7) second line\n(s1 task 7) third\n");
}

TEST(WorkerOutputTest, TasksAndStreamsKeepTheirOwnUnfinishedLines) {
  Printed printed;
  WorkerOutput output(printed.sink());
  output.add("s1", 1, false, "one ");
  output.add("s2", 2, false, "two ");
  output.add("s1", 1, true, "err ");
  output.add("s2", 2, false, "done\n");
  output.add("s1", 1, false, "done\n");
  output.add("s1", 1, true, "done\n");
  EXPECT_EQ(printed.out, "(s2 task 2) two done\n(s1 task 1) one done\n");
  EXPECT_EQ(printed.err, "(s1 task 1) err done\n");
}

TEST(WorkerOutputTest, AnUnfinishedLastLineIsPrintedWhenItsTaskIsDone) {
  Printed printed;
  WorkerOutput output(printed.sink());
  output.add("s1", 3, false, "no newline at the end");
  output.add("s1", 4, true, "other task");
  output.task_done(3);
  EXPECT_EQ(printed.out, "(s1 task 3) no newline at the end\n");
  EXPECT_EQ(printed.err, "");
  output.task_done(3);
  EXPECT_EQ(printed.out, "(s1 task 3) no newline at the end\n") << "printed twice";
  output.flush_all();
  EXPECT_EQ(printed.err, "(s1 task 4) other task\n");
}

TEST(WorkerOutputTest, UnattributedOutputHasNoTaskInItsPrefix) {
  Printed printed;
  WorkerOutput output(printed.sink());
  output.add("s9", 0, true, "from a worker between tasks\n");
  EXPECT_EQ(printed.err, "(s9) from a worker between tasks\n");
}

TEST(WorkerOutputTest, AnEndlessLineIsPrintedInBoundedPieces) {
  Printed printed;
  WorkerOutput output(printed.sink());
  const std::string piece(WorkerOutput::kMaxPartialLine / 4, 'x');
  for (int i = 0; i < 4; ++i) output.add("s1", 5, false, piece);
  EXPECT_EQ(printed.out, "(s1 task 5) " + std::string(WorkerOutput::kMaxPartialLine, 'x') + "\n");
}

TEST(WorkerOutputTest, DestructionPrintsWhatIsLeft) {
  Printed printed;
  {
    WorkerOutput output(printed.sink());
    output.add("s1", 6, false, "last words");
  }
  EXPECT_EQ(printed.out, "(s1 task 6) last words\n");
}

}  // namespace
}  // namespace clupy::client
