// The Server-Sent Events parser: the same events whatever the network's chunk boundaries
// (byte by byte, CR and LF split), every line ending, comments, multi-line data, llama.cpp's
// `error:` lines, and a last event without its blank line.
#include "clients/bench/sse_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

std::vector<SseEvent> ParseWhole(const std::string& stream) {
  SseParser parser;
  std::vector<SseEvent> events;
  parser.Feed(stream, events);
  parser.Finish(events);
  return events;
}

std::vector<SseEvent> ParseByteByByte(const std::string& stream) {
  SseParser parser;
  std::vector<SseEvent> events;
  for (char c : stream) parser.Feed(std::string_view(&c, 1), events);
  parser.Finish(events);
  return events;
}

std::vector<std::string> Data(const std::vector<SseEvent>& events) {
  std::vector<std::string> data;
  for (const SseEvent& e : events) data.push_back(e.data);
  return data;
}

TEST(SseParserTest, EventsAreTheSameWhateverTheChunkBoundaries) {
  const std::string stream =
      "data: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: {\"b\":2}\n\ndata:{\"c\":3}\r\rdata: "
      "[DONE]\n\n";
  const std::vector<std::string> expected = {"{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "[DONE]"};
  EXPECT_EQ(Data(ParseWhole(stream)), expected);
  EXPECT_EQ(Data(ParseByteByByte(stream)), expected);
  // Every split point of the stream into two pieces.
  for (size_t split = 0; split <= stream.size(); ++split) {
    SseParser parser;
    std::vector<SseEvent> events;
    parser.Feed(std::string_view(stream).substr(0, split), events);
    parser.Feed(std::string_view(stream).substr(split), events);
    parser.Finish(events);
    EXPECT_EQ(Data(events), expected) << "split at " << split;
  }
}

TEST(SseParserTest, CrLfSplitBetweenReadsIsOneLineEnd) {
  SseParser parser;
  std::vector<SseEvent> events;
  parser.Feed("data: x\r", events);
  parser.Feed("\n\r", events);  // the LF ends "data: x"; the CR is the blank line
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "x");
  parser.Feed("\ndata: y\n\n", events);  // this LF belongs to the CR before it
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].data, "y");
}

TEST(SseParserTest, MultiLineDataIsJoinedWithNewlines) {
  const std::vector<SseEvent> events = ParseByteByByte("data: {\"a\":\ndata:  1}\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "{\"a\":\n 1}");  // only the first space after the colon goes
}

TEST(SseParserTest, CommentsIdsRetriesAndUnknownFieldsAreSkipped) {
  const std::vector<SseEvent> events =
      ParseWhole(": ping\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n:\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "x");
  EXPECT_EQ(events[0].event, "");
}

TEST(SseParserTest, EventNameIsKeptAndAnEventWithoutDataIsDropped) {
  const std::vector<SseEvent> events =
      ParseWhole("event: error\ndata: {\"error\":{}}\n\nevent: lonely\n\ndata: z\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "error");
  EXPECT_EQ(events[1].event, "");  // the name does not leak into the next event
  EXPECT_EQ(events[1].data, "z");
}

TEST(SseParserTest, LlamaCppErrorLineBecomesAnErrorEvent) {
  const std::vector<SseEvent> events = ParseWhole("error: {\"code\":500}\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "error");
  EXPECT_EQ(events[0].data, "{\"code\":500}");
}

TEST(SseParserTest, FinishDispatchesAnEventWhoseBlankLineNeverCame) {
  EXPECT_EQ(Data(ParseWhole("data: a\n\ndata: [DONE]")), (std::vector<std::string>{"a", "[DONE]"}));
  EXPECT_EQ(Data(ParseWhole("data: a\n\ndata: b\n")), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(ParseWhole("").empty());
  EXPECT_TRUE(ParseWhole(": only a comment").empty());
}

TEST(SseParserTest, FieldWithoutColonAndEmptyDataLine) {
  // "data" alone is a data line with an empty value (the spec's rule for a line with no colon).
  const std::vector<SseEvent> events = ParseWhole("data\ndata: x\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "\nx");
}

}  // namespace
}  // namespace moeserve::bench
