//! Integration tests: the real server on 127.0.0.1:0, a real PostgreSQL (a database per
//! test), called through the generated tonic clients.

mod access;
mod analytics;
mod cache;
mod evaluation;
mod helpers;
mod rubric;
mod server;
