//! This node's identity among several sharing one database.

use whatsapp_core::NodeId;

/// The node settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Node")]
pub struct NodeSettings {
    /// This node's id: it names the node in logs, `/readyz` and the `whatsapp_node_info`
    /// metric, and will own session leases (`[a-z0-9_-]`, 1–64). Default: derived from the
    /// host name.
    #[arg(long, env = "NODE_ID", value_parser = node_id)]
    pub node_id: Option<NodeId>,
}

fn node_id(value: &str) -> Result<NodeId, String> {
    let value = value.trim();
    NodeId::new(value).map_err(|_| format!("`{value}` must be 1–64 characters of [a-z0-9_-]"))
}

impl NodeSettings {
    /// `NODE_ID`, else one derived from this machine's host name.
    pub fn check(&self) -> NodeId {
        self.node_id
            .clone()
            .unwrap_or_else(|| node_id_from_hostname(&whatsapp_core::profile::hostname()))
    }
}

/// A node id from a host name: lower case, every character outside `[a-z0-9_-]` becomes
/// `-`, at most 64 characters; `node` when nothing is left.
pub fn node_id_from_hostname(hostname: &str) -> NodeId {
    let mut id: String = hostname
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        id = "node".to_owned();
    }
    NodeId::new(id).unwrap_or_else(|_| NodeId::new("node").expect("`node` is a valid node id"))
}
