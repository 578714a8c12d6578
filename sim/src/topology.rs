//! The simulated world's nodes, derived from the one service table (`wiring::SERVICES`).
//!
//! | nodes                     | region      | address                          | runs                        |
//! |---------------------------|-------------|----------------------------------|-----------------------------|
//! | `<service>-<i>`           | the table's | 10.<region>.3.<10·row + i>:<port>| instance i of a service     |
//! | `psp`, `courier`          | the table's | 10.<region>.5.<row>:<port>       | the external providers' fakes |
//! | `<database>-db`           | its service's | 10.<region>.2.<row>:5432       | the Postgres model of a service's database |
//! | `redis`                   | MSK         | 10.1.6.1:6379                    | the Redis model (hints between instances) |
//! | `client`                  | MSK         | 10.1.9.1                         | the workload, through the gateways |
//!
//! Regions: MSK is 10.1/16, NSK 10.2/16. A fault naming a service (`order`) hits every
//! instance of it; `order-2` one instance. The Kafka nodes (msk-1, msk-2, nsk-1,
//! kafka-controller) are created by [`crate::kafka::KafkaCluster`] from its own config.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub use wiring::{Region, ServiceSpec, SERVICES};

/// One node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub region: Region,
    pub ip: [u8; 4],
    pub port: u16,
    /// Its HTTP listener beside the gRPC one, if any.
    pub http_port: Option<u16>,
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
    /// The URL of its HTTP listener beside the gRPC one (its main URL if it has none).
    pub fn http_url(&self) -> String {
        let port = self.http_port.unwrap_or(self.port);
        format!("http://{}", SocketAddr::new(self.ip(), port))
    }
}

/// The second octet of a region's addresses.
fn octet(region: Region) -> u8 {
    match region {
        Region::Msk => 1,
        Region::Nsk => 2,
    }
}

/// The row of `service` in the table.
fn row(service: &ServiceSpec) -> u8 {
    SERVICES
        .iter()
        .position(|s| s == service)
        .map_or(0, |i| i as u8 + 1)
}

/// The nodes of `service`'s instances, `<name>-1` first (a fake's one node is `<name>`).
pub fn instances(service: &ServiceSpec) -> Vec<NodeSpec> {
    if service.fake {
        return vec![NodeSpec {
            name: service.name.to_owned(),
            region: service.region,
            ip: [10, octet(service.region), 5, row(service)],
            port: service.port,
            http_port: service.http_port,
        }];
    }
    (1..=service.sim_instances)
        .map(|i| NodeSpec {
            name: format!("{}-{i}", service.name),
            region: service.region,
            ip: [10, octet(service.region), 3, 10 * row(service) + i],
            port: service.port,
            http_port: service.http_port,
        })
        .collect()
}

/// The service named `name`.
pub fn service(name: &str) -> &'static ServiceSpec {
    wiring::spec(name).unwrap_or_else(|| panic!("the service table has no {name}"))
}

/// Comma-separated URLs of every instance of `name` (what a caller's channel takes).
pub fn urls(name: &str) -> String {
    instances(service(name))
        .iter()
        .map(NodeSpec::url)
        .collect::<Vec<_>>()
        .join(",")
}

/// The node of `service`'s database, if it has one (`<database>-db`).
pub fn database_node(service: &ServiceSpec) -> Option<NodeSpec> {
    let database = service.database?;
    Some(NodeSpec {
        name: format!("{database}-db"),
        region: service.region,
        ip: [10, octet(service.region), 2, row(service)],
        port: 5432,
        http_port: None,
    })
}

/// The Redis model's node.
pub fn redis() -> NodeSpec {
    NodeSpec {
        name: "redis".into(),
        region: Region::Msk,
        ip: [10, 1, 6, 1],
        port: 6379,
        http_port: None,
    }
}

pub fn client() -> NodeSpec {
    NodeSpec {
        name: "client".into(),
        region: Region::Msk,
        ip: [10, 1, 9, 1],
        port: 0,
        http_port: None,
    }
}

/// Every database node.
pub fn database_nodes() -> Vec<NodeSpec> {
    SERVICES.iter().filter_map(database_node).collect()
}

/// The nodes a fault may name, besides the Kafka model's brokers and controller (the client
/// is the workload, not a target): databases, Redis, service instances, the fakes.
pub fn fault_targets() -> Vec<NodeSpec> {
    database_nodes()
        .into_iter()
        .chain([redis()])
        .chain(SERVICES.iter().flat_map(instances))
        .collect()
}

/// The nodes a fault naming `name` hits: a node's own name, or a service's name for every
/// instance of it.
pub fn expand(name: &str) -> Vec<String> {
    match wiring::spec(name) {
        Some(service) => instances(service).into_iter().map(|n| n.name).collect(),
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
