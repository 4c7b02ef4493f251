//! Thin tonic adapters: principal -> validate and convert the request -> domain and
//! stores -> response.

pub mod analytics;
mod convert;
pub mod evaluation;
pub mod rubric;
pub mod rubric_client;
pub mod status;
