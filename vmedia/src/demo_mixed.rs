//! `vmedia demo --mixed-generations`: a fleet as it is found in a data centre. The
//! simulators take turns over [`PROFILES`]: iRMC S4 with old firmware (virtual floppy,
//! Redfish too old to use) and current firmware, S5 below and above the floppy's end, S6;
//! some without IPMI over LAN (S6 from 2.00 ships with it off), some without Redfish,
//! some busy after every power action and media connect. After the deploy the demo
//! counts, from what each simulated iRMC was asked, which media path and which
//! boot-device path each node took.

use std::collections::BTreeMap;

use testkit::FleetSpec;

/// One kind of controller: a label and its `irmc-sim` arguments.
pub struct Profile {
    pub label: &'static str,
    pub args: &'static [&'static str],
}

/// The controllers of a mixed fleet, one simulator each, in turn.
pub const PROFILES: &[Profile] = &[
    Profile {
        label: "S4 7.65F (old firmware: floppy, no usable Redfish)",
        args: &["--model", "S4", "--firmware", "7.65F", "--no-redfish"],
    },
    Profile {
        label: "S4 9.62F",
        args: &["--model", "S4", "--firmware", "9.62F"],
    },
    Profile {
        label: "S5 1.60P, busy",
        args: &["--model", "S5", "--firmware", "1.60P", "--busy-ms", "500"],
    },
    Profile {
        label: "S6 2.50P, no IPMI",
        args: &["--model", "S6", "--firmware", "2.50P", "--no-ipmi"],
    },
    Profile {
        label: "S4 9.21F, busy",
        args: &["--model", "S4", "--firmware", "9.21F", "--busy-ms", "500"],
    },
    Profile {
        label: "S5 1.25P, Redfish off",
        args: &["--model", "S5", "--firmware", "1.25P", "--no-redfish"],
    },
    Profile {
        label: "S6 2.50P, no IPMI, busy",
        args: &[
            "--model",
            "S6",
            "--firmware",
            "2.50P",
            "--no-ipmi",
            "--busy-ms",
            "500",
        ],
    },
    Profile {
        label: "S4 9.62F, no IPMI",
        args: &["--model", "S4", "--firmware", "9.62F", "--no-ipmi"],
    },
];

/// Spreads the fleet over one simulator per profile (more when a profile's share of
/// the nodes exceeds a simulator's size).
pub fn apply(spec: &mut FleetSpec) {
    let per_profile = spec.nodes.div_ceil(PROFILES.len()).max(1);
    spec.nodes_per_sim = spec.nodes_per_sim.min(per_profile).max(1);
    spec.sim_profiles = PROFILES
        .iter()
        .map(|p| p.args.iter().map(|a| (*a).to_string()).collect())
        .collect();
}

/// Per node (the merged `GET /counters` of the simulators): the media path and the
/// boot-device path it took, counted.
pub fn paths(counters: &serde_json::Value) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut media = BTreeMap::new();
    let mut boot = BTreeMap::new();
    let Some(nodes) = counters.get("nodes").and_then(|n| n.as_object()) else {
        return (media, boot);
    };
    for c in nodes.values() {
        let scci = |op: &str| c["scci"][op].as_u64().unwrap_or(0);
        let m = if scci("ConnectRemoteFdImage") > 0 {
            "SCCI virtual floppy"
        } else if c["redfish_post"].as_u64().unwrap_or(0) > 0 {
            // The OEM connect action (the deploy's power actions are SCCI). The ejects
            // are SCCI on every path, so an SCCI HD disconnect says nothing here.
            "Redfish (Fujitsu OEM) virtual hard disk"
        } else if scci("ConnectRemoteHdImage") > 0 {
            "SCCI virtual hard disk"
        } else {
            "none"
        };
        *media.entry(m.to_string()).or_insert(0) += 1;
        let b = if c["ipmi"]["set_system_boot_options"].as_u64().unwrap_or(0) > 0 {
            "IPMI (boot device 0x20)"
        } else if c["redfish_patch"].as_u64().unwrap_or(0) > 0 {
            "Redfish (Cd)"
        } else {
            "none"
        };
        *boot.entry(b.to_string()).or_insert(0) += 1;
        let busy = c["busy_refused"].as_u64().unwrap_or(0);
        if busy > 0 {
            *boot
                .entry("~ of all nodes, met a busy iRMC and waited".to_string())
                .or_insert(0) += 1;
        }
    }
    (media, boot)
}
