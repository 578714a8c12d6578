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
pub mod user {
    tonic::include_proto!("marketplace.user.v1");
}
pub mod ad {
    tonic::include_proto!("marketplace.ad.v1");
}
pub mod search {
    tonic::include_proto!("marketplace.search.v1");
}
pub mod media {
    tonic::include_proto!("marketplace.media.v1");
}
pub mod report {
    tonic::include_proto!("marketplace.report.v1");
}
pub mod notification {
    tonic::include_proto!("marketplace.notification.v1");
}

/// The name of a proto enum value without its type prefix (`ORDER_STATUS_PAID` → `PAID`):
/// what the REST API and the stores say.
fn api_name(full: &'static str, prefix: &str) -> &'static str {
    full.strip_prefix(prefix).unwrap_or(full)
}

impl order::OrderStatus {
    /// `PAID` for `ORDER_STATUS_PAID`.
    pub fn api_name(self) -> &'static str {
        api_name(self.as_str_name(), "ORDER_STATUS_")
    }
    /// The status the API calls `name` (`Unspecified` for none).
    pub fn from_api_name(name: &str) -> Self {
        Self::from_str_name(&format!("ORDER_STATUS_{name}")).unwrap_or_default()
    }
}

impl payment::PaymentStatus {
    /// `CAPTURED` for `PAYMENT_STATUS_CAPTURED`.
    pub fn api_name(self) -> &'static str {
        api_name(self.as_str_name(), "PAYMENT_STATUS_")
    }
    /// The status the API calls `name` (`Unspecified` for none).
    pub fn from_api_name(name: &str) -> Self {
        Self::from_str_name(&format!("PAYMENT_STATUS_{name}")).unwrap_or_default()
    }
}

impl ad::AdStatus {
    /// `ACTIVE` for `AD_STATUS_ACTIVE`.
    pub fn api_name(self) -> &'static str {
        api_name(self.as_str_name(), "AD_STATUS_")
    }
    /// The status the API calls `name` (`Unspecified` for none).
    pub fn from_api_name(name: &str) -> Self {
        Self::from_str_name(&format!("AD_STATUS_{name}")).unwrap_or_default()
    }
}

impl delivery::ShipmentStage {
    /// `DELIVERED` for `SHIPMENT_STAGE_DELIVERED`.
    pub fn api_name(self) -> &'static str {
        api_name(self.as_str_name(), "SHIPMENT_STAGE_")
    }
    /// The stage the courier calls `name` (`Unspecified` for none).
    pub fn from_api_name(name: &str) -> Self {
        Self::from_str_name(&format!("SHIPMENT_STAGE_{name}")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_round_trip_without_the_type_prefix() {
        assert_eq!(order::OrderStatus::Paid.api_name(), "PAID");
        assert_eq!(
            order::OrderStatus::from_api_name("PAYMENT_PENDING"),
            order::OrderStatus::PaymentPending
        );
        assert_eq!(
            payment::PaymentStatus::from_api_name("REFUND_PENDING").api_name(),
            "REFUND_PENDING"
        );
        assert_eq!(
            delivery::ShipmentStage::from_api_name("nonsense"),
            delivery::ShipmentStage::Unspecified
        );
    }
}

impl media::PhotoState {
    /// `READY` for `PHOTO_STATE_READY`.
    pub fn api_name(self) -> &'static str {
        api_name(self.as_str_name(), "PHOTO_STATE_")
    }
    /// The state the store calls `name` (`Unspecified` for none).
    pub fn from_api_name(name: &str) -> Self {
        Self::from_str_name(&format!("PHOTO_STATE_{name}")).unwrap_or_default()
    }
}

impl notification::Channel {
    /// `email` for `CHANNEL_EMAIL`, `in_app` for `CHANNEL_IN_APP`: what the store says.
    pub fn api_name(self) -> String {
        api_name(self.as_str_name(), "CHANNEL_").to_ascii_lowercase()
    }
    /// The channel the store calls `name` (`Unspecified` for none).
    pub fn from_api_name(name: &str) -> Self {
        Self::from_str_name(&format!("CHANNEL_{}", name.to_ascii_uppercase())).unwrap_or_default()
    }
}

impl notification::DeliveryStatus {
    /// `SENT` for `DELIVERY_STATUS_SENT`.
    pub fn api_name(self) -> &'static str {
        api_name(self.as_str_name(), "DELIVERY_STATUS_")
    }
    /// The status the store calls `name` (`Unspecified` for none).
    pub fn from_api_name(name: &str) -> Self {
        Self::from_str_name(&format!("DELIVERY_STATUS_{name}")).unwrap_or_default()
    }
}
