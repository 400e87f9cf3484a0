//! Out-of-band inspection reads: the report's hardware inventory and the NIC MACs
//! from Redfish.

use super::*;
use crate::wire::{
    REDFISH_ETHERNET, ReportInventory, parse_ethernet_collection, parse_ethernet_mac,
    parse_inventory,
};

impl IrmcClient {
    /// `GET /report.xml`, read for inspection (CPUs, memory, disks, firmware).
    pub async fn inventory(&self) -> Result<ReportInventory, IrmcError> {
        const OP: &str = "get_report";
        let reply = self.send(OP, Req::get("/report.xml")).await?;
        self.expect_success(OP, &reply, &[200])?;
        parse_inventory(&reply.text()).map_err(|e| self.wire_err(OP, e))
    }

    /// The system's NIC MACs from Redfish: `GET .../EthernetInterfaces`, then each member
    /// (1 + n requests). `Ok(None)` when the BMC has no such collection (HTTP 404: no
    /// Redfish, or a generation without it), so the caller can say so.
    pub async fn ethernet_macs(&self) -> Result<Option<Vec<String>>, IrmcError> {
        const OP: &str = "get_ethernet_interfaces";
        let reply = self.send(OP, Req::get(REDFISH_ETHERNET)).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        self.expect_success(OP, &reply, &[200])?;
        let members = parse_ethernet_collection(&reply.text()).map_err(|e| self.wire_err(OP, e))?;
        let mut macs = Vec::new();
        for path in members {
            let reply = self.send(OP, Req::get(path)).await?;
            self.expect_success(OP, &reply, &[200])?;
            if let Some(mac) =
                parse_ethernet_mac(&reply.text()).map_err(|e| self.wire_err(OP, e))?
                && !macs.contains(&mac)
            {
                macs.push(mac);
            }
        }
        Ok(Some(macs))
    }
}
