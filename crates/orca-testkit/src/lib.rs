//! Test support shared by the worker's and the server's tests: real components only.
//!
//! - [`anthropic::FakeAnthropic`]: an Anthropic Messages API (SSE) on 127.0.0.1 that the real
//!   Claude Code CLI talks to through `ANTHROPIC_BASE_URL`;
//! - [`responses::FakeResponses`]: an OpenAI Responses API (SSE) for the real Codex CLI;
//! - [`git_http::GitHttp`]: `git http-backend` behind Basic auth, serving bare repositories;
//! - [`procwatch::ProcWatch`]: a watch on `/proc` proving no secret is in any argument list;
//! - [`bins`]: where the agent CLIs are (`ORCA_TEST_CLAUDE_BIN`, `ORCA_TEST_CODEX_BIN`, set by
//!   `scripts/setup/30-agents.sh`), skipping loudly when they are missing (failing under CI).
//!
//! The fakes are scripted by turn: the n-th step answers a request that carries n tool
//! results, so a script reads like the conversation it produces.

pub mod anthropic;
pub mod bins;
pub mod git_http;
pub mod procwatch;
pub mod responses;
mod serve;

pub use serve::Recorded;
