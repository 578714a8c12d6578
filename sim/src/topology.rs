//! The simulated world's nodes, derived from one table of services.
//!
//! | service   | region | instances | addresses (instance i = 1..)  | runs                                   |
//! |-----------|--------|-----------|-------------------------------|----------------------------------------|
//! | gateway   | MSK    | 2         | 10.1.3.1i:8080                | gateway (REST)                         |
//! | order     | MSK    | 2         | 10.1.3.2i:50051               | order service (gRPC) + its saga drivers|
//! | payment   | MSK    | 2         | 10.1.3.3i:50052 (webhook 8090)| payment service (gRPC)                 |
//! | delivery  | NSK    | 2         | 10.2.3.4i:50053               | delivery service (gRPC)                |
//! | analytics | MSK    | 2         | 10.1.3.5i                     | analytics consumers (group `analytics`)|
//!
//! Instance nodes are named `<service>-<i>` (`order-1`, `order-2`); a fault naming the service
//! (`order`) hits every instance. Besides them: one database node per service database
//! ([`DATABASES`]), the fake PSP and courier, the client, and the Kafka nodes (msk-1, msk-2,
//! nsk-1, kafka-controller), which [`crate::kafka::KafkaCluster`] creates from its own config.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A region of the seed's deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Region {
    Msk,
    Nsk,
}

impl Region {
    /// The second octet of the region's addresses.
    const fn octet(self) -> u8 {
        match self {
            Region::Msk => 1,
            Region::Nsk => 2,
        }
    }

    /// The Kafka `client.rack` of services placed in this region.
    pub fn rack(self) -> &'static str {
        match self {
            Region::Msk => "msk",
            Region::Nsk => "nsk",
        }
    }
}

/// One node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
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

fn node(name: &str, region: Region, ip: [u8; 4], port: u16) -> NodeSpec {
    NodeSpec {
        name: name.to_owned(),
        region,
        ip,
        port,
    }
}

/// One row of the service table.
#[derive(Clone, Copy, Debug)]
pub struct ServiceSpec {
    pub name: &'static str,
    pub region: Region,
    pub instances: u8,
    /// Fourth-octet base of the instances' addresses (instance i gets `base + i`).
    host_base: u8,
    /// The port it serves on (0: serves nothing).
    pub port: u16,
    /// Its database node, if it has one.
    pub database: Option<&'static str>,
}

impl ServiceSpec {
    /// Its instances' nodes, `<name>-1` first.
    pub fn instances(&self) -> Vec<NodeSpec> {
        (1..=self.instances)
            .map(|i| {
                node(
                    &format!("{}-{i}", self.name),
                    self.region,
                    [10, self.region.octet(), 3, self.host_base + i],
                    self.port,
                )
            })
            .collect()
    }

    /// Comma-separated URLs of every instance (what a caller's channel is given).
    pub fn urls(&self) -> String {
        self.instances()
            .iter()
            .map(NodeSpec::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Its database node.
    pub fn database_node(&self) -> Option<NodeSpec> {
        let name = self.database?;
        DATABASES.iter().position(|d| *d == name).map(|i| {
            node(
                name,
                self.region,
                [10, self.region.octet(), 2, i as u8 + 1],
                5432,
            )
        })
    }
}

/// Every database node's name (each owned by one service of [`SERVICES`]).
pub const DATABASES: [&str; 4] = ["orders-db", "payments-db", "deliveries-db", "analytics-db"];

pub const GATEWAY: ServiceSpec = ServiceSpec {
    name: "gateway",
    region: Region::Msk,
    instances: 2,
    host_base: 10,
    port: 8080,
    database: None,
};
pub const ORDER: ServiceSpec = ServiceSpec {
    name: "order",
    region: Region::Msk,
    instances: 2,
    host_base: 20,
    port: 50051,
    database: Some("orders-db"),
};
pub const PAYMENT: ServiceSpec = ServiceSpec {
    name: "payment",
    region: Region::Msk,
    instances: 2,
    host_base: 30,
    port: 50052,
    database: Some("payments-db"),
};
pub const DELIVERY: ServiceSpec = ServiceSpec {
    name: "delivery",
    region: Region::Nsk,
    instances: 2,
    host_base: 40,
    port: 50053,
    database: Some("deliveries-db"),
};
pub const ANALYTICS: ServiceSpec = ServiceSpec {
    name: "analytics",
    region: Region::Msk,
    instances: 2,
    host_base: 50,
    port: 0,
    database: Some("analytics-db"),
};

/// Every service of the marketplace, dependencies first.
pub const SERVICES: [ServiceSpec; 5] = [PAYMENT, DELIVERY, ORDER, ANALYTICS, GATEWAY];

/// Port of the payment service's PSP webhook (on each payment instance).
pub const PAYMENT_CALLBACK_PORT: u16 = 8090;

pub fn psp() -> NodeSpec {
    node("psp", Region::Msk, [10, 1, 5, 1], 8081)
}
pub fn courier() -> NodeSpec {
    node("courier", Region::Nsk, [10, 2, 5, 2], 8082)
}
pub fn client() -> NodeSpec {
    node("client", Region::Msk, [10, 1, 9, 1], 0)
}

/// Every database node.
pub fn database_nodes() -> Vec<NodeSpec> {
    SERVICES
        .iter()
        .filter_map(ServiceSpec::database_node)
        .collect()
}

/// The nodes a fault may name, besides the Kafka model's brokers and controller (the client
/// is the workload, not a target): databases, service instances, the PSP and the courier.
pub fn fault_targets() -> Vec<NodeSpec> {
    database_nodes()
        .into_iter()
        .chain(SERVICES.iter().flat_map(ServiceSpec::instances))
        .chain([psp(), courier()])
        .collect()
}

/// The nodes a fault naming `name` hits: a node's own name, or a service's name for every
/// instance of it.
pub fn expand(name: &str) -> Vec<String> {
    match SERVICES.iter().find(|s| s.name == name) {
        Some(service) => service.instances().into_iter().map(|n| n.name).collect(),
        None => vec![name.to_owned()],
    }
}

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
