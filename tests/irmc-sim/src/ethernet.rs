//! Redfish `EthernetInterfaces` of the simulated system: the collection and one member
//! per NIC, with the fields of the DMTF `EthernetInterface` schema a client reads for
//! MACs (`MACAddress`, `PermanentMACAddress`) and the usual status fields.
//!
//! Each node has two NICs: NIC 1 carries [`crate::ramdisk::node_mac`] of the BMC's
//! address (the MAC the simulated ramdisk sends in its lookup), NIC 2 a second address
//! derived the same way (`52:55:...`), as a dual-port onboard LAN shows.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::server::Route;

/// The collection's path.
pub const COLLECTION: &str = "/redfish/v1/Systems/0/EthernetInterfaces";

/// NICs per simulated node.
pub const NICS: u8 = 2;

/// The MACs of the node whose BMC is at `ip`, NIC 1 first.
pub fn macs(ip: Ipv4Addr) -> Vec<String> {
    let o = ip.octets();
    vec![
        crate::ramdisk::node_mac(ip),
        format!("52:55:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
    ]
}

pub(crate) fn route(path: &str) -> Option<Route> {
    if path == COLLECTION {
        return Some(Route::EthernetInterfaces);
    }
    let n: u8 = path
        .strip_prefix(COLLECTION)?
        .strip_prefix('/')?
        .parse()
        .ok()?;
    Some(Route::EthernetInterface(n))
}

pub(crate) fn collection() -> Value {
    let members: Vec<Value> = (1..=NICS)
        .map(|n| json!({"@odata.id": format!("{COLLECTION}/{n}")}))
        .collect();
    json!({
        "@odata.id": COLLECTION,
        "@odata.type": "#EthernetInterfaceCollection.EthernetInterfaceCollection",
        "Name": "Ethernet Network Interface Collection",
        "Members@odata.count": NICS,
        "Members": members,
    })
}

pub(crate) fn member(ip: Ipv4Addr, n: u8) -> Option<Value> {
    let mac = macs(ip)
        .get(usize::from(n).checked_sub(1)?)?
        .to_ascii_uppercase();
    Some(json!({
        "@odata.id": format!("{COLLECTION}/{n}"),
        "@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface",
        "Id": n.to_string(),
        "Name": format!("Onboard LAN {n}"),
        "InterfaceEnabled": true,
        "LinkStatus": "LinkUp",
        "SpeedMbps": 10000,
        "MACAddress": mac,
        "PermanentMACAddress": mac,
        "Status": {"State": "Enabled", "Health": "OK"},
    }))
}

/// The collection document, as served (for clients' golden tests).
pub fn collection_json() -> String {
    collection().to_string()
}

/// Member `n` (from 1) of the node whose BMC is at `ip`, as served.
pub fn member_json(ip: Ipv4Addr, n: u8) -> Option<String> {
    member(ip, n).map(|v| v.to_string())
}
