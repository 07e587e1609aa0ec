// Python's text rules, as Jinja templates see them through CPython: strings are sequences of
// code points (len, indexing and slicing count code points, not UTF-8 bytes), str.isspace()
// decides what strip() and split() remove, and repr() of floats and strings has an exact form
// that templates print when they render a list or a dict ("['a', 1.5]").
//
// Used by the Jinja values, filters and methods (engine/chat/jinja/); nothing here allocates
// state beyond its return value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::engine::jinja {

// UTF-8 → code points. Invalid bytes become U+FFFD each (template text and JSON input are
// validated before they get here; this only keeps hostile input from doing anything worse).
std::u32string DecodeUtf8(std::string_view text);
void AppendUtf8(char32_t code_point, std::string& out);
std::string EncodeUtf8(std::u32string_view code_points);

// Number of code points; a byte count when the text is ASCII.
int64_t CodePointLength(std::string_view text);
bool IsAscii(std::string_view text);

// str.isspace() of one code point (Unicode White_Space plus the ASCII separators \x1c-\x1f).
bool IsPythonSpace(char32_t c);

// Case mapping of str.upper()/lower(): ASCII, Latin-1, Greek and Cyrillic one-to-one
// mappings. Python's full mapping also has one-to-many cases ("ß".upper() == "SS") and other
// scripts; those pass through unchanged here (documented limitation).
char32_t ToUpper(char32_t c);
char32_t ToLower(char32_t c);
bool IsCased(char32_t c);  // has an upper or lower form in the table above
std::string UpperCase(std::string_view text);
std::string LowerCase(std::string_view text);

// repr(float) / str(float): the shortest digits that round-trip, in fixed notation for
// 1e-4 <= |x| < 1e16 ("0.5", "3.0") and scientific otherwise ("1e+16", "1.5e-05");
// "inf", "-inf", "nan".
std::string PythonFloatRepr(double value);

// repr(str): single quotes unless the text holds ' and no ", backslash escapes for the quote,
// backslash, \n \r \t, and \x/\u/\U for characters Python does not print.
std::string PythonStringRepr(std::string_view text);

}  // namespace moeserve::engine::jinja
