// Reading one streamed OpenAI response into a RequestRecord, with a fake clock: TTFT at the
// first chunk with text (a chat role chunk is not output), ITL between content chunks, token
// counts from usage (else one per chunk), [DONE] ends E2EL, and every failure mode has its own
// status code and the server's message.
#include "clients/bench/openai_stream.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

using std::chrono::milliseconds;

// Feeds `events` (each one whole SSE event) 10 ms apart, after 5 ms, either whole or byte by
// byte, then finishes 1 ms after the last.
class StreamFixture {
 public:
  explicit StreamFixture(long status = 200)
      : status_(status), run_start_(Clock::now()), start_(run_start_ + milliseconds(2)) {}

  const RequestRecord& Run(const std::vector<std::string>& events, bool byte_by_byte = false,
                           const std::string& transport_code = "") {
    OpenAiStreamReader reader(&record_, start_, run_start_);
    Clock::time_point now = start_ + milliseconds(5);
    for (const std::string& event : events) {
      if (byte_by_byte) {
        for (char c : event) reader.OnBody(status_, std::string_view(&c, 1), now);
      } else {
        reader.OnBody(status_, event, now);
      }
      now += milliseconds(10);
    }
    reader.Finish(status_, transport_code, transport_code.empty() ? "" : "broken", now);
    return record_;
  }

 private:
  const long status_;
  const Clock::time_point run_start_;
  const Clock::time_point start_;
  RequestRecord record_;
};

std::string Text(const std::string& piece, const std::string& finish = "null") {
  return "data: {\"choices\":[{\"index\":0,\"text\":\"" + piece + "\",\"finish_reason\":" + finish +
         "}]}\n\n";
}
std::string Delta(const std::string& key, const std::string& piece) {
  return "data: {\"choices\":[{\"index\":0,\"delta\":{\"" + key + "\":\"" + piece +
         "\"},\"finish_reason\":null}]}\n\n";
}
const char kUsage[] =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":5,"
    "\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n";
const char kDone[] = "data: [DONE]\n\n";

TEST(OpenAiStreamReaderTest, CompletionTimingAndUsageCountsSameWholeOrByteByByte) {
  const std::vector<std::string> events = {
      Text("a"), ": keep-alive\n\n", Text("b c"), Text("d"), Text("", "\"length\""), kUsage, kDone};
  for (bool byte_by_byte : {false, true}) {
    StreamFixture fixture;
    const RequestRecord& r = fixture.Run(events, byte_by_byte);
    ASSERT_TRUE(r.success) << r.status_code << " " << r.error;
    EXPECT_EQ(r.status_code, "OK");
    EXPECT_NEAR(r.ttft, 0.005, 1e-9);  // the first text, 5 ms after the send
    // Content at 5, 25, 35 ms (the comment event took a 10 ms slot): two gaps.
    ASSERT_EQ(r.itl.size(), 2u);
    EXPECT_NEAR(r.itl[0], 0.020, 1e-9);
    EXPECT_NEAR(r.itl[1], 0.010, 1e-9);
    EXPECT_NEAR(r.latency, 0.065, 1e-9);  // [DONE], the 7th event, at 65 ms
    EXPECT_EQ(r.output_tokens, 5);        // usage, not the 3 content chunks
    EXPECT_EQ(r.server_completion_tokens, 5);
    EXPECT_EQ(r.prompt_len, 11);
    EXPECT_EQ(r.server_cached_tokens, 4);
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.token_message_counts, (std::vector<int32_t>{1, 1, 1}));
    ASSERT_EQ(r.token_message_times.size(), 3u);
    EXPECT_NEAR(r.token_message_times[0], 0.007, 1e-9);  // relative to the run's start
  }
}

TEST(OpenAiStreamReaderTest, ChatRoleChunkIsNotOutputButReasoningIs) {
  StreamFixture fixture;
  const RequestRecord& r =
      fixture.Run({Delta("role", "assistant"), Delta("content", ""),
                   Delta("reasoning_content", "hmm"), Delta("content", "hi"), kDone});
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_NEAR(r.ttft, 0.025, 1e-9);  // the third event
  EXPECT_EQ(r.itl.size(), 1u);
  // No usage: one token per content chunk, and that is also the "server" count.
  EXPECT_EQ(r.output_tokens, 2);
  EXPECT_EQ(r.server_completion_tokens, 2);
}

TEST(OpenAiStreamReaderTest, MalformedJsonIsAProtocolErrorQuotingTheEvent) {
  StreamFixture fixture;
  const RequestRecord& r = fixture.Run({Text("a"), "data: {\"choices\": [\n\n", kDone}, true);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.status_code, "PROTOCOL_ERROR");
  EXPECT_NE(r.error.find("malformed JSON"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("{\"choices\": ["), std::string::npos) << r.error;
}

TEST(OpenAiStreamReaderTest, NonObjectEventAndEventsAfterDoneAreProtocolErrors) {
  EXPECT_EQ(StreamFixture().Run({"data: [1,2]\n\n"}).status_code, "PROTOCOL_ERROR");
  EXPECT_EQ(StreamFixture().Run({Text("a"), kDone, Text("b")}).status_code, "PROTOCOL_ERROR");
}

TEST(OpenAiStreamReaderTest, StreamedErrorCarriesTheServersMessageAndCode) {
  StreamFixture fixture;
  const RequestRecord& r =
      fixture.Run({Text("a"),
                   "data: {\"error\":{\"message\":\"engine died\",\"type\":\"InternalServerError\","
                   "\"code\":500}}\n\n",
                   kDone});
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.status_code, "HTTP_500");
  EXPECT_EQ(r.error, "engine died");

  StreamFixture llama;
  const RequestRecord& l = llama.Run({"error: {\"message\":\"slot gone\"}\n\n"});
  EXPECT_EQ(l.status_code, "STREAM_ERROR");
  EXPECT_EQ(l.error, "slot gone");
}

TEST(OpenAiStreamReaderTest, HttpErrorStatusReadsOpenAisErrorBody) {
  StreamFixture fixture(429);
  const RequestRecord& r = fixture.Run(
      {"{\"error\":{\"message\":\"too many\",", "\"type\":\"rate_limit\",\"code\":429}}"});
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.status_code, "HTTP_429");
  EXPECT_EQ(r.error, "too many");

  StreamFixture plain(503);
  const RequestRecord& p = plain.Run({"Service Unavailable"});
  EXPECT_EQ(p.status_code, "HTTP_503");
  EXPECT_EQ(p.error, "Service Unavailable");
}

TEST(OpenAiStreamReaderTest, StreamWithoutDoneOrFinishReasonIsIncomplete) {
  StreamFixture fixture;
  EXPECT_EQ(fixture.Run({Text("a"), Text("b")}).status_code, "INCOMPLETE_STREAM");
  // A finish_reason without [DONE] is a complete answer (older llama.cpp).
  EXPECT_TRUE(StreamFixture().Run({Text("a"), Text("", "\"stop\"")}).success);
}

TEST(OpenAiStreamReaderTest, TransportFailureKeepsItsCodeUnlessDoneArrived) {
  StreamFixture cut_fixture;
  const RequestRecord& cut = cut_fixture.Run({Text("a")}, false, "DEADLINE_EXCEEDED");
  EXPECT_EQ(cut.status_code, "DEADLINE_EXCEEDED");
  EXPECT_EQ(cut.error, "broken");
  StreamFixture closed_fixture;  // the connection broke after [DONE]: nothing was lost
  EXPECT_TRUE(closed_fixture.Run({Text("a"), kDone}, false, "TRANSPORT_ERROR").success);
}

TEST(OpenAiErrorMessageTest, ReadsEveryCommonErrorShape) {
  EXPECT_EQ(OpenAiErrorMessage(R"({"error":{"message":"m","type":"t","code":"c"}})"), "m");
  EXPECT_EQ(OpenAiErrorMessage(R"({"error":"flat"})"), "flat");
  EXPECT_EQ(OpenAiErrorMessage(R"({"detail":"Not Found"})"), "Not Found");
  EXPECT_EQ(OpenAiErrorMessage(R"({"message":"top"})"), "top");
  EXPECT_EQ(OpenAiErrorMessage("  <html>oops</html>\n"), "<html>oops</html>");
  EXPECT_EQ(OpenAiErrorMessage(std::string(300, 'x')).size(), 203u);  // 200 and "..."
}

}  // namespace
}  // namespace moeserve::bench
