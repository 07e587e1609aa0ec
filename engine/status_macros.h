// Early-return helpers for absl::Status / absl::StatusOr, used throughout the engine.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MOESERVE_CONCAT_INNER_(a, b) a##b
#define MOESERVE_CONCAT_(a, b) MOESERVE_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define MOESERVE_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::absl::Status moeserve_status_ = (expr);            \
    if (!moeserve_status_.ok()) return moeserve_status_; \
  } while (0)

// `lhs = *expr` when the StatusOr `expr` is OK; otherwise returns its status.
#define MOESERVE_ASSIGN_OR_RETURN(lhs, expr) \
  MOESERVE_ASSIGN_OR_RETURN_IMPL_(MOESERVE_CONCAT_(moeserve_statusor_, __LINE__), lhs, expr)
#define MOESERVE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return statusor.status();              \
  lhs = *std::move(statusor)
