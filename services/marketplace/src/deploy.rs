//! Kubernetes manifests for every row of the service table (`marketplace manifests`), so the
//! deployment and the code share one list of services, ports and dependencies.
//!
//! Per service: a Deployment (two replicas; one for the fakes), a Service for its ports, and
//! a PodDisruptionBudget (one pod may be down at a time). Every pod runs `marketplace serve
//! <name>` with its listeners on all interfaces, the admin listener on
//! [`ADMIN_PORT`] (liveness `/healthz`, readiness `/readyz`), settings from the ConfigMap
//! `marketplace-config`, and secrets from Secrets it names but the repository never holds:
//! `marketplace-database` (key `url`, the `DATABASE_URL`) and `marketplace-s3` (keys
//! `access-key-id`, `secret-access-key`). The services (not the fakes) talk gRPC over mutual
//! TLS with the identity in the Secret `marketplace-mtls` (keys `tls.crt`, `tls.key`,
//! `ca.crt`), mounted read-only at [`TLS_DIR`]; its certificate must name every service as
//! the ConfigMap's URLs do (`order`, `payment`, …). A renewed Secret reaches the mounted files
//! and the next connection without a restart. The output is a YAML stream whose documents are
//! JSON (JSON is YAML), one object each.

use serde_json::{json, Value};
use wiring::{ServiceSpec, SERVICES};

/// The admin listener's port in a pod.
pub const ADMIN_PORT: u16 = 9090;

/// Where a pod finds its mutual-TLS identity (the Secret `marketplace-mtls`).
pub const TLS_DIR: &str = "/etc/marketplace/tls";

/// Seconds between a pod's SIGTERM and its SIGKILL: the process drains connections and saga
/// steps for at most 10 s (`platform::shutdown::DRAIN_MAX`).
const GRACE_S: u32 = 30;

fn upper(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

fn labels(s: &ServiceSpec) -> Value {
    json!({
        "app.kubernetes.io/name": s.name,
        "app.kubernetes.io/part-of": "marketplace",
        "marketplace/fake": if s.fake { "true" } else { "false" },
    })
}

/// The ConfigMap every pod reads its settings from: where the cluster's dependencies and the
/// other services are (cluster DNS names in the namespace).
fn config_map() -> Value {
    let mut data = serde_json::Map::new();
    data.insert(
        "KAFKA_BOOTSTRAP".into(),
        json!("kafka-0.kafka:9092,kafka-1.kafka:9092,kafka-2.kafka:9092"),
    );
    data.insert("REDIS_URL".into(), json!("redis://redis:6379"));
    if let Some(s3) = SERVICES.iter().find(|s| s.name == "s3") {
        // The S3-compatible fake; point S3_ENDPOINT at real object storage instead.
        data.insert(
            "S3_ENDPOINT".into(),
            json!(format!("http://s3:{}", s3.port)),
        );
    }
    data.insert("RUST_LOG".into(), json!("info"));
    for s in SERVICES.iter().filter(|s| s.port != 0) {
        data.insert(
            format!("{}_URLS", upper(s.name)),
            json!(format!("http://{}:{}", s.name, s.port)),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "marketplace-config", "labels": {"app.kubernetes.io/part-of": "marketplace"}},
        "data": data,
    })
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> Value {
    json!({
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}},
    })
}

fn deployment(s: &ServiceSpec, image: &str) -> Value {
    let mut env = vec![
        json!({"name": "INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "ADMIN_LISTEN", "value": format!("0.0.0.0:{ADMIN_PORT}")}),
        json!({"name": "CLIENT_RACK", "value": s.region.rack()}),
    ];
    let mut ports = vec![json!({"name": "admin", "containerPort": ADMIN_PORT})];
    if s.port != 0 {
        env.push(json!({"name": format!("{}_LISTEN", upper(s.name)), "value": format!("0.0.0.0:{}", s.port)}));
        ports.push(json!({"name": "api", "containerPort": s.port}));
    }
    if let Some(http) = s.http_port {
        env.push(json!({"name": format!("{}_HTTP_LISTEN", upper(s.name)), "value": format!("0.0.0.0:{http}")}));
        ports.push(json!({"name": "http", "containerPort": http}));
    }
    if s.database.is_some() {
        env.push(secret_env(
            "DATABASE_URL",
            "marketplace-database",
            "url",
            false,
        ));
    }
    if s.name == "media" || s.name == "s3" {
        env.push(secret_env(
            "S3_ACCESS_KEY_ID",
            "marketplace-s3",
            "access-key-id",
            true,
        ));
        env.push(secret_env(
            "S3_SECRET_ACCESS_KEY",
            "marketplace-s3",
            "secret-access-key",
            true,
        ));
    }
    let mtls = if s.fake {
        None
    } else {
        for (var, file) in [
            ("TLS_CERT_FILE", "tls.crt"),
            ("TLS_KEY_FILE", "tls.key"),
            ("TLS_CA_FILE", "ca.crt"),
        ] {
            env.push(json!({"name": var, "value": format!("{TLS_DIR}/{file}")}));
        }
        Some((
            json!([{"name": "mtls", "mountPath": TLS_DIR, "readOnly": true}]),
            json!([{"name": "mtls", "secret": {"secretName": "marketplace-mtls", "defaultMode": 0o440}}]),
        ))
    };
    let probe = |path: &str, period: u32, failures: u32| {
        json!({
            "httpGet": {"path": path, "port": "admin"},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        })
    };
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": s.name, "labels": labels(s)},
        "spec": {
            "replicas": if s.fake { 1 } else { 2 },
            "selector": {"matchLabels": {"app.kubernetes.io/name": s.name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(s),
                    // Prometheus's conventional pod discovery: /metrics on the admin port.
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": ADMIN_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": GRACE_S,
                    // fsGroup: the mounted Secret's files (mode 0440) are readable by the process.
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                    "containers": [{
                        "name": s.name,
                        "image": image,
                        "args": ["serve", s.name],
                        "ports": ports,
                        "envFrom": [{"configMapRef": {"name": "marketplace-config"}}],
                        "env": env,
                        // Started when /healthz answers; restarted when it stops answering;
                        // traffic only while /readyz says its database and Kafka answer.
                        "startupProbe": probe("/healthz", 2, 30),
                        "livenessProbe": probe("/healthz", 10, 3),
                        "readinessProbe": probe("/readyz", 5, 2),
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                },
            },
        },
    });
    if let Some((mounts, volumes)) = mtls {
        let pod = &mut deployment["spec"]["template"]["spec"];
        pod["containers"][0]["volumeMounts"] = mounts;
        pod["volumes"] = volumes;
    }
    deployment
}

fn service(s: &ServiceSpec) -> Option<Value> {
    if s.port == 0 {
        return None;
    }
    let mut ports = vec![json!({"name": "api", "port": s.port, "targetPort": "api"})];
    if let Some(http) = s.http_port {
        ports.push(json!({"name": "http", "port": http, "targetPort": "http"}));
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": s.name, "labels": labels(s)},
        "spec": {"selector": {"app.kubernetes.io/name": s.name}, "ports": ports},
    }))
}

fn disruption_budget(s: &ServiceSpec) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": s.name, "labels": labels(s)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": s.name}},
        },
    })
}

/// Every object, in the service table's order (dependencies first).
pub fn objects(image: &str) -> Vec<Value> {
    let mut out = vec![config_map()];
    for s in SERVICES.iter() {
        out.push(deployment(s, image));
        out.extend(service(s));
        out.push(disruption_budget(s));
    }
    out
}

/// The objects as a YAML stream (each document JSON).
pub fn manifests(image: &str) -> String {
    let mut text = String::from(
        "# Generated by `marketplace manifests` from the service table (services/wiring).\n\
         # Do not edit: change the table or services/marketplace/src/deploy.rs and regenerate.\n",
    );
    for o in objects(image) {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string_pretty(&o).unwrap_or_default());
        text.push('\n');
    }
    text
}

/// The image the committed manifests name.
pub fn default_image() -> String {
    format!("marketplace:{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_manifests_are_what_the_service_table_generates() {
        let committed = include_str!("../../../deploy/k8s/marketplace.yaml");
        assert!(
            committed == manifests(&default_image()),
            "deploy/k8s/marketplace.yaml is stale: run `cargo run -q --bin marketplace -- \
             manifests > deploy/k8s/marketplace.yaml`"
        );
    }

    #[test]
    fn every_service_gets_a_deployment_and_a_budget_and_ported_ones_a_service() {
        let objects = objects("x");
        let count = |kind: &str| objects.iter().filter(|o| o["kind"] == kind).count();
        assert_eq!(count("Deployment"), SERVICES.len());
        assert_eq!(count("PodDisruptionBudget"), SERVICES.len());
        assert_eq!(
            count("Service"),
            SERVICES.iter().filter(|s| s.port != 0).count()
        );
        let order = objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "order")
            .expect("the order service");
        let env = order["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        assert!(
            env.contains("DATABASE_URL") && env.contains("ORDER_LISTEN"),
            "{env}"
        );
        assert!(
            env.contains("TLS_CA_FILE") && env.contains(TLS_DIR),
            "a service runs mutual TLS: {env}"
        );
        let volumes = order["spec"]["template"]["spec"]["volumes"].to_string();
        assert!(volumes.contains("marketplace-mtls"), "{volumes}");
        let psp = objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "psp")
            .expect("the psp fake's deployment");
        let env = psp["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        assert!(!env.contains("TLS_"), "a fake stays plain: {env}");
    }
}
