//! Integration tests: the real server on 127.0.0.1:0, on a real PostgreSQL (a database per
//! test) and, for every store behaviour, on the embedded SQLite store too, called through
//! the generated tonic clients.

mod access;
mod acknowledgement;
mod analytics;
mod assignments;
mod autoqa;
mod batch_scores;
mod bench;
mod bi;
mod cache;
mod cache_conformance;
mod calibration;
mod cli;
mod coaching;
mod connect;
mod disputes;
mod embedded;
mod evaluation;
mod faults;
mod fuzz;
mod hardening;
mod helpers;
mod opaque_ids;
mod owned_servers;
mod paging;
mod rubric;
mod server;
mod telemetry;
mod tls;
mod webhooks;
