//! The simulated world's nodes, in one table.
//!
//! | node            | region | address         | runs                                   |
//! |-----------------|--------|-----------------|----------------------------------------|
//! | msk-1, msk-2    | MSK    | 10.1.1.1-2:9092 | Kafka brokers (rack msk)               |
//! | kafka-controller| MSK    | 10.1.1.10:9093  | Kafka controller + group coordinator   |
//! | nsk-1           | NSK    | 10.2.1.1:9092   | Kafka broker (rack nsk)                |
//! | orders-db       | MSK    | 10.1.2.1:5432   | Postgres model of the order service    |
//! | payments-db     | MSK    | 10.1.2.2:5432   | Postgres model of the payment service  |
//! | deliveries-db   | NSK    | 10.2.2.3:5432   | Postgres model of the delivery service |
//! | analytics-db    | MSK    | 10.1.2.4:5432   | Postgres model of the analytics mart   |
//! | gateway         | MSK    | 10.1.3.1:8080   | gateway (REST)                         |
//! | order           | MSK    | 10.1.3.2:50051  | order service (gRPC)                   |
//! | payment         | MSK    | 10.1.3.3:50052  | payment service (gRPC; PSP webhook :8090) |
//! | delivery        | NSK    | 10.2.3.4:50053  | delivery service (gRPC)                |
//! | analytics       | MSK    | 10.1.3.5        | analytics consumer (group `analytics`) |
//! | psp             | MSK    | 10.1.5.1:8081   | fake payment provider (HTTP)           |
//! | courier         | NSK    | 10.2.5.2:8082   | fake courier API (HTTP)                |
//! | client          | MSK    | 10.1.9.1        | the workload, through the gateway      |
//!
//! The Kafka nodes are created by [`crate::kafka::KafkaCluster`] from its own config, which
//! uses the same addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A region of the seed's deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Region {
    Msk,
    Nsk,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct NodeSpec {
    pub name: &'static str,
    pub region: Region,
    pub ip: [u8; 4],
    pub port: u16,
}

impl NodeSpec {
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self.ip))
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

const fn node(name: &'static str, region: Region, ip: [u8; 4], port: u16) -> NodeSpec {
    NodeSpec {
        name,
        region,
        ip,
        port,
    }
}

pub const ORDERS_DB: NodeSpec = node("orders-db", Region::Msk, [10, 1, 2, 1], 5432);
pub const PAYMENTS_DB: NodeSpec = node("payments-db", Region::Msk, [10, 1, 2, 2], 5432);
pub const DELIVERIES_DB: NodeSpec = node("deliveries-db", Region::Nsk, [10, 2, 2, 3], 5432);
pub const ANALYTICS_DB: NodeSpec = node("analytics-db", Region::Msk, [10, 1, 2, 4], 5432);
pub const ANALYTICS: NodeSpec = node("analytics", Region::Msk, [10, 1, 3, 5], 0);
/// Every database node.
pub const DATABASES: [NodeSpec; 4] = [ORDERS_DB, PAYMENTS_DB, DELIVERIES_DB, ANALYTICS_DB];
pub const GATEWAY: NodeSpec = node("gateway", Region::Msk, [10, 1, 3, 1], 8080);
pub const ORDER: NodeSpec = node("order", Region::Msk, [10, 1, 3, 2], 50051);
pub const PAYMENT: NodeSpec = node("payment", Region::Msk, [10, 1, 3, 3], 50052);
/// The payment service's PSP webhook (same node as [`PAYMENT`]).
pub const PAYMENT_CALLBACKS: NodeSpec = node("payment", Region::Msk, [10, 1, 3, 3], 8090);
pub const DELIVERY: NodeSpec = node("delivery", Region::Nsk, [10, 2, 3, 4], 50053);
pub const PSP: NodeSpec = node("psp", Region::Msk, [10, 1, 5, 1], 8081);
pub const COURIER: NodeSpec = node("courier", Region::Nsk, [10, 2, 5, 2], 8082);
pub const CLIENT: NodeSpec = node("client", Region::Msk, [10, 1, 9, 1], 0);

/// The nodes a fault may name, besides the Kafka model's brokers and controller (the client
/// is the workload, not a target).
pub const FAULT_TARGETS: [NodeSpec; 11] = [
    ORDERS_DB,
    PAYMENTS_DB,
    DELIVERIES_DB,
    ANALYTICS_DB,
    GATEWAY,
    ORDER,
    PAYMENT,
    DELIVERY,
    ANALYTICS,
    PSP,
    COURIER,
];

/// Region of an address (MSK 10.1/16, NSK 10.2/16).
pub fn region_of(ip: IpAddr) -> Option<Region> {
    match ip {
        IpAddr::V4(v4) => match v4.octets() {
            [10, 1, _, _] => Some(Region::Msk),
            [10, 2, _, _] => Some(Region::Nsk),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}
