//! [`HostPortInfo`]: the host ports in use on a node (upstream `fwk.HostPortInfo`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerPort, Pod};

/// The host IP that binds every address: a port on it conflicts with that port on any IP.
pub const DEFAULT_BIND_ALL_HOST_IP: &str = "0.0.0.0";

/// The protocol a port uses when none is given.
pub const DEFAULT_PROTOCOL: &str = "TCP";

/// A protocol and port number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

/// Host ports in use, by host IP.
///
/// Unlike upstream's set, each (IP, protocol, port) is counted: two pods on one node that
/// declare the same host port (which only a bypassed scheduler can cause) keep it in use until
/// both are gone, so that removing one pod undoes exactly what adding it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPortInfo {
    by_ip: HashMap<String, HashMap<ProtocolPort, u32>>,
}

impl HostPortInfo {
    /// Records a use of (ip, protocol, port); an empty IP means [`DEFAULT_BIND_ALL_HOST_IP`], an
    /// empty protocol [`DEFAULT_PROTOCOL`]; ports ≤ 0 are ignored.
    pub fn add(&mut self, ip: &str, protocol: &str, port: i32) {
        if port <= 0 {
            return;
        }
        let (ip, pp) = sanitize(ip, protocol, port);
        *self
            .by_ip
            .entry(ip.to_owned())
            .or_default()
            .entry(pp)
            .or_insert(0) += 1;
    }

    /// Releases one use of (ip, protocol, port).
    pub fn remove(&mut self, ip: &str, protocol: &str, port: i32) {
        if port <= 0 {
            return;
        }
        let (ip, pp) = sanitize(ip, protocol, port);
        if let Some(ports) = self.by_ip.get_mut(ip) {
            if let Some(count) = ports.get_mut(&pp) {
                *count -= 1;
                if *count == 0 {
                    ports.remove(&pp);
                }
            }
            if ports.is_empty() {
                self.by_ip.remove(ip);
            }
        }
    }

    /// Whether (ip, protocol, port) conflicts with a port in use: the same IP or
    /// [`DEFAULT_BIND_ALL_HOST_IP`] on either side.
    #[must_use]
    pub fn check_conflict(&self, ip: &str, protocol: &str, port: i32) -> bool {
        if port <= 0 {
            return false;
        }
        let (ip, pp) = sanitize(ip, protocol, port);
        if ip == DEFAULT_BIND_ALL_HOST_IP {
            return self.by_ip.values().any(|ports| ports.contains_key(&pp));
        }
        [DEFAULT_BIND_ALL_HOST_IP, ip].iter().any(|key| {
            self.by_ip
                .get(*key)
                .is_some_and(|ports| ports.contains_key(&pp))
        })
    }

    /// Number of distinct (ip, protocol, port) in use.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_ip.values().map(HashMap::len).sum()
    }

    /// No port in use.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Every (ip, protocol/port) in use, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ProtocolPort)> {
        self.by_ip
            .iter()
            .flat_map(|(ip, ports)| ports.keys().map(move |pp| (ip.as_str(), pp)))
    }

    /// Records (`add`) or releases the host ports of `pod`.
    pub fn update_pod(&mut self, pod: &Pod, add: bool) {
        for p in pod_host_ports(pod) {
            let ip = p.host_ip.as_deref().unwrap_or_default();
            let protocol = p.protocol.as_deref().unwrap_or_default();
            if add {
                self.add(ip, protocol, host_port(p));
            } else {
                self.remove(ip, protocol, host_port(p));
            }
        }
    }
}

fn host_port(p: &ContainerPort) -> i32 {
    p.host_port.unwrap_or(0)
}

fn sanitize<'a>(ip: &'a str, protocol: &str, port: i32) -> (&'a str, ProtocolPort) {
    let ip = if ip.is_empty() {
        DEFAULT_BIND_ALL_HOST_IP
    } else {
        ip
    };
    let protocol = if protocol.is_empty() {
        DEFAULT_PROTOCOL
    } else {
        protocol
    };
    (
        ip,
        ProtocolPort {
            protocol: protocol.to_owned(),
            port,
        },
    )
}

/// The container ports of `pod` with a host port: those of its containers and of its
/// restartable (sidecar) init containers, which run for the pod's whole life (upstream
/// `schedutil.GetHostPorts`).
pub fn pod_host_ports(pod: &Pod) -> impl Iterator<Item = &ContainerPort> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let containers = spec.into_iter().flat_map(|s| s.containers.iter());
    sidecars
        .chain(containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| host_port(p) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_all_conflicts_with_every_ip() {
        let mut h = HostPortInfo::default();
        h.add("127.0.0.1", "TCP", 80);
        assert!(h.check_conflict("", "", 80));
        assert!(h.check_conflict("0.0.0.0", "TCP", 80));
        assert!(h.check_conflict("127.0.0.1", "TCP", 80));
        assert!(!h.check_conflict("127.0.0.2", "TCP", 80));
        assert!(!h.check_conflict("127.0.0.1", "UDP", 80));
        assert!(!h.check_conflict("127.0.0.1", "TCP", 81));

        let mut h = HostPortInfo::default();
        h.add("", "", 8080);
        assert!(h.check_conflict("10.0.0.1", "TCP", 8080));
        assert!(!h.check_conflict("10.0.0.1", "UDP", 8080));
        assert!(!h.check_conflict("10.0.0.1", "TCP", 0));
    }

    #[test]
    fn counted_uses() {
        let mut h = HostPortInfo::default();
        h.add("1.2.3.4", "UDP", 53);
        h.add("1.2.3.4", "UDP", 53);
        assert_eq!(h.len(), 1);
        h.remove("1.2.3.4", "UDP", 53);
        assert!(h.check_conflict("1.2.3.4", "UDP", 53));
        h.remove("1.2.3.4", "UDP", 53);
        assert!(h.is_empty());
        h.remove("1.2.3.4", "UDP", 53);
        assert_eq!(h, HostPortInfo::default());
    }
}
