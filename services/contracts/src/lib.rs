//! gRPC contracts of the marketplace services, generated from `proto/`.

#![allow(clippy::all)]

pub mod order {
    tonic::include_proto!("marketplace.order.v1");
}
pub mod payment {
    tonic::include_proto!("marketplace.payment.v1");
}
pub mod delivery {
    tonic::include_proto!("marketplace.delivery.v1");
}
