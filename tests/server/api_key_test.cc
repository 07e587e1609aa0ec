// ConstantTimeEquals against std::string equality on random keys and near misses.
#include "server/api_key.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace moeserve::server {
namespace {

TEST(ConstantTimeEqualsTest, AgreesWithStringEqualityOnKeysAndNearMisses) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string key(1 + rng() % 40, '\0');
    for (char& c : key) c = static_cast<char>(byte(rng));
    std::string guess = key;
    switch (rng() % 5) {
      case 0:
        break;  // equal
      case 1:
        guess[rng() % guess.size()] ^= static_cast<char>(1 + rng() % 255);  // one byte off
        break;
      case 2:
        guess.push_back('x');  // a longer key with the right prefix
        break;
      case 3:
        guess.pop_back();  // a prefix of the key
        break;
      case 4:
        guess = key + key;  // the key repeated (the loop wraps around `expected`)
        break;
    }
    EXPECT_EQ(ConstantTimeEquals(key, guess), key == guess) << trial;
  }
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("key", ""));
  EXPECT_FALSE(ConstantTimeEquals("", "key"));
}

}  // namespace
}  // namespace moeserve::server
