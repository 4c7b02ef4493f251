//! IQS: the Internal Quality Score of customer-service work, served over gRPC.

pub mod auth;
pub mod autoqa_worker;
pub mod cache;
pub mod cli;
pub mod codec;
pub mod config;
pub mod connect;
pub mod connection;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod layers;
pub mod outbox_pruner;
pub mod projector;
pub mod proto;
pub mod server;
pub mod services;
pub mod store;
pub mod store_watch;
pub mod telemetry;
pub mod tls;
pub mod webhook_worker;
