//! The pure core: the rubric model and its rules, field validation and paging.
//! No IO, no async, no transport types.

pub mod access;
pub mod agreement;
pub mod analytics;
pub mod autoqa;
pub mod autoqa_agreement;
pub mod calibration;
pub mod coaching;
pub mod dispute;
pub mod evaluation;
pub mod import_partition;
pub mod interaction;
pub mod paging;
pub mod random;
pub mod rubric;
pub mod sampling;
pub mod scoring;
pub mod statistics;
pub mod tenant;
pub mod vader;
pub mod validation;
pub mod webhook;
