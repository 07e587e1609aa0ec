#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/onig_compat.h"

namespace moeserve::engine::tokenizer_internal {
namespace {

// Long runs of one class (a megabyte of spaces) can need more than PCRE2's default 32 KiB JIT
// stack; 8 MiB is reserved lazily (PCRE2 maps it on demand) and only once per thread.
constexpr size_t kJitStackStartBytes = 32 * 1024;
constexpr size_t kJitStackMaxBytes = 8 * 1024 * 1024;

// Per-thread matching state: one ovector pair is all the tokenizer reads (the whole match), so
// one match-data block serves every pattern. Results are copied out before the next call.
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(kJitStackStartBytes, kJitStackMaxBytes, nullptr);
    if (context != nullptr && jit_stack != nullptr) {
      pcre2_jit_stack_assign(context, nullptr, jit_stack);
    }
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchScratch& Scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

pcre2_code* Code(void* code) { return static_cast<pcre2_code*>(code); }

int RunMatch(const pcre2_code* code, bool jit, std::string_view subject, size_t start,
             uint32_t options, size_t* begin, size_t* end) {
  MatchScratch& scratch = Scratch();
  if (scratch.data == nullptr) return PCRE2_ERROR_NOMEMORY;
  const auto* bytes = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const int rc = jit ? pcre2_jit_match(code, bytes, subject.size(), start, options, scratch.data,
                                       scratch.context)
                     : pcre2_match(code, bytes, subject.size(), start, options | PCRE2_NO_UTF_CHECK,
                                   scratch.data, scratch.context);
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  // rc == 0 means the ovector was too small for the capture groups; the whole match (pair 0)
  // is still set, and that is all we read.
  if (rc < 0) return rc;
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
  *begin = ovector[0];
  *end = ovector[1];
  return 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Create(std::string_view pattern, Syntax syntax) {
  std::string compiled =
      syntax == Syntax::kOniguruma ? TranslateOnigPattern(pattern) : std::string(pattern);
  uint32_t options = PCRE2_UTF;
  if (syntax == Syntax::kLiteral) {
    options |= PCRE2_LITERAL;  // (PCRE2 rejects PCRE2_UCP with it; it has no classes anyway)
  } else {
    options |= PCRE2_UCP | PCRE2_MULTILINE;  // Oniguruma: ^ and $ match at line boundaries
  }
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  if (context == nullptr) return absl::ResourceExhaustedError("pcre2_compile_context_create");
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);  // Oniguruma: only \n ends a line
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(compiled.data()), compiled.size(),
                                   options, &error_code, &error_offset, context);
  pcre2_compile_context_free(context);
  if (code == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("regex does not compile: ", ErrorMessage(error_code), " at offset ",
                     error_offset, " of the PCRE2 translation '", compiled, "'"));
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = std::string(pattern);
  regex->code_ = code;
  // Without JIT (unsupported CPU, or no executable memory) the interpreter gives the same
  // results, only slower.
  regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return regex;
}

Regex::~Regex() { pcre2_code_free(Code(code_)); }

int Regex::Find(std::string_view subject, size_t start, size_t* begin, size_t* end) const {
  return RunMatch(Code(code_), jit_, subject, start, 0, begin, end);
}

bool Regex::MatchesWhole(std::string_view subject) const {
  size_t begin = 0, end = 0;
  // Anchoring options force the interpreter (JIT code is compiled for unanchored searches);
  // this is only used on single characters.
  return RunMatch(Code(code_), /*jit=*/false, subject, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                  &begin, &end) == 1;
}

std::string Regex::ErrorMessage(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return absl::StrCat("PCRE2 error ", code);
  }
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace moeserve::engine::tokenizer_internal
