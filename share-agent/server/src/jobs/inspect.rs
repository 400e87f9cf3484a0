//! Out-of-band inspection: `report.xml` for the hardware (Ironic's `cpus`, `cpu_arch`,
//! `memory_mb`, `local_gb`, and capabilities `irmc_firmware_version`,
//! `rom_firmware_version`, `server_model`), plus what this system needs to know of the
//! BMC (`irmc_virtual_fd`, `supported_boot_modes`), and the NIC MACs from Redfish's
//! `EthernetInterfaces`. Ironic's irmc inspection reads MACs over SNMP; Redfish gives the
//! same list without an SNMP community in driver_info.
//!
//! BMC requests: 1 (report.xml) + 1 + one per NIC (Redfish); nothing is changed on the
//! node, so its power state is left alone.

use std::collections::HashMap;

use crate::error::AgentError;

use super::JobCtx;

pub async fn inspect(ctx: &mut JobCtx) -> Result<(), AgentError> {
    let client = ctx.client()?;
    let inv = ctx.bmc("reading report.xml", client.inventory()).await?;
    ctx.progress(&format!(
        "report.xml: {} cores, {} MB memory, {} GB on {} drives, {} {}",
        inv.cpus, inv.memory_mb, inv.local_gb, inv.drives, inv.irmc_model, inv.irmc_firmware
    ))
    .await;
    let macs = ctx
        .bmc(
            "reading the NICs (Redfish EthernetInterfaces)",
            client.ethernet_macs(),
        )
        .await?;
    let mut caps: Vec<(String, String)> = Vec::new();
    let mut cap = |k: &str, v: &str| {
        // Capabilities are `key:value,...`: a value with ',' or ':' would break the list.
        let v: String = v
            .chars()
            .map(|c| if c == ',' || c == ':' { ' ' } else { c })
            .collect();
        let v = v.trim();
        if !v.is_empty() {
            caps.push((k.to_string(), v.to_string()));
        }
    };
    cap("irmc_firmware_version", &inv.irmc_firmware);
    if let Some(b) = &inv.bios_version {
        cap("rom_firmware_version", b);
    }
    if let Some(m) = &inv.server_model {
        cap("server_model", m);
    }
    cap(
        "irmc_virtual_fd",
        if inv.has_virtual_fd { "true" } else { "false" },
    );
    // The one-time boot override of every iRMC generation takes Legacy and UEFI.
    cap("supported_boot_modes", "bios/uefi");
    let capabilities = caps
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut props: HashMap<String, String> = HashMap::new();
    props.insert("cpus".into(), inv.cpus.to_string());
    props.insert("cpu_arch".into(), "x86_64".into());
    props.insert("memory_mb".into(), inv.memory_mb.to_string());
    props.insert("local_gb".into(), inv.local_gb.to_string());
    props.insert("capabilities".into(), capabilities);
    let macs = match macs {
        Some(m) => m,
        None => {
            ctx.progress(
                "the BMC has no Redfish EthernetInterfaces: no MACs found; add a port by hand",
            )
            .await;
            Vec::new()
        }
    };
    ctx.out.bmc_model = inv.irmc_model.clone();
    ctx.out.bmc_firmware = inv.irmc_firmware.clone();
    ctx.out.bmc_has_virtual_fd = inv.has_virtual_fd;
    ctx.out.properties = props;
    ctx.out.macs = macs;
    ctx.out.inspected = true;
    Ok(())
}
