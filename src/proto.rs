//! Code generated from `proto/` by `build.rs`.
#![allow(clippy::all, missing_docs)]

pub mod iqs {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("iqs.common.v1");
        }
    }
    pub mod rubric {
        pub mod v1 {
            tonic::include_proto!("iqs.rubric.v1");
        }
    }
    pub mod evaluation {
        pub mod v1 {
            tonic::include_proto!("iqs.evaluation.v1");
        }
    }
    pub mod analytics {
        pub mod v1 {
            tonic::include_proto!("iqs.analytics.v1");
        }
    }
    pub mod integration {
        pub mod v1 {
            tonic::include_proto!("iqs.integration.v1");
        }
    }
    pub mod autoqa {
        pub mod v1 {
            tonic::include_proto!("iqs.autoqa.v1");
        }
    }
    pub mod bench {
        pub mod v1 {
            tonic::include_proto!("iqs.bench.v1");
        }
    }
}

pub use iqs::{
    analytics::v1 as analytics, autoqa::v1 as autoqa, bench::v1 as bench, common::v1 as common,
    evaluation::v1 as evaluation, integration::v1 as integration, rubric::v1 as rubric,
};

/// Encoded `FileDescriptorSet` of every IQS proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/iqs_descriptor.bin"));
