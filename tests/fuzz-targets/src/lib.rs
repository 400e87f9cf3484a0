//! One function per fuzz target, each feeding arbitrary bytes to one parser of input
//! that comes from outside: a BMC, a deploy ramdisk, an operator's file. `fuzz/` wraps
//! each in a libFuzzer target (nightly, `cargo fuzz run <name>`); this crate's test
//! replays the checked-in corpus on stable, so every CI run re-checks every input that
//! ever found new coverage. A target fails only by panicking (or by running out of
//! memory under the fuzzer's limit): every parser must turn any input into a value or
//! an error.

use irmc_sim::boot::{cmdline, fat, iso};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by its name under `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("scci_reply", scci_reply),
    ("report_xml", report_xml),
    ("settings_dump", settings_dump),
    ("redfish_json", redfish_json),
    ("ipmi_packet", ipmi_packet),
    ("ipa_json", ipa_json),
    ("agent_toml", agent_toml),
    ("sim_cmdseq", sim_cmdseq),
    ("sim_media", sim_media),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// SCCI replies (`<Status>` documents) and command sequences, as the client reads them.
pub fn scci_reply(data: &[u8]) {
    if let Some(s) = text(data) {
        let _ = irmc::wire::parse_status(s);
        let _ = irmc::wire::parse_cmdseq(s);
    }
}

/// `/report.xml`.
pub fn report_xml(data: &[u8]) {
    if let Some(s) = text(data)
        && let Ok(r) = irmc::wire::parse_report(s)
    {
        // What the agent derives from a report.
        let _ = irmc::wire::has_virtual_fd(&r.model, &r.firmware);
    }
}

/// The SCCI settings dump (`ConfigSpace`).
pub fn settings_dump(data: &[u8]) {
    if let Some(s) = text(data)
        && let Ok(set) = irmc::wire::Settings::parse(s)
    {
        for kind in [
            irmc::wire::MediaKind::Cd,
            irmc::wire::MediaKind::Fd,
            irmc::wire::MediaKind::Hd,
        ] {
            let _ = set.media(kind).is_configured();
        }
    }
}

/// Redfish `Systems/<id>` JSON.
pub fn redfish_json(data: &[u8]) {
    if let Some(s) = text(data) {
        let _ = irmc::wire::parse_system(s);
    }
}

/// RMCP/RMCP+ datagrams and the IPMI responses inside them (no session keys: the
/// pre-session and handshake path, which is what a stranger can reach).
pub fn ipmi_packet(data: &[u8]) {
    use irmc::ipmi::wire as w;
    let _ = w::parse_packet(data, None);
    let _ = w::decode_response(data);
    let _ = w::parse_chassis_status(data);
    let _ = w::parse_boot_flags_response(data);
    let _ = w::BootFlags::decode(data);
}

/// What a deploy ramdisk sends the share agent: heartbeat bodies, and command results.
pub fn ipa_json(data: &[u8]) {
    let _ = share_agent::http::parse_heartbeat(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = share_agent::ramdisk::command_status(&v);
        let _ = share_agent::ramdisk::command_error_text(&v);
    }
    if let Some(s) = text(data) {
        // The Range header of an image download.
        let _ = share_agent::http::parse_range(Some(s), 1 << 30);
    }
}

/// The share agent's TOML configuration file.
pub fn agent_toml(data: &[u8]) {
    if let Some(s) = text(data) {
        let _ = share_agent::config::Config::from_toml(s);
    }
}

/// The simulator's side of SCCI: the command sequences a client posts.
pub fn sim_cmdseq(data: &[u8]) {
    if let Some(s) = text(data) {
        let _ = irmc_sim::scci::parse_cmdseq(s);
    }
}

/// The simulator's media inspection: an ISO (El Torito entries, boot loader
/// configurations), a FAT image (the parameter floppy) and kernel command lines.
pub fn sim_media(data: &[u8]) {
    let bytes = data.to_vec();
    if let Ok(img) = iso::Iso::open(Box::new(bytes.clone())) {
        let _ = img.boot_entries();
        for path in [
            "/isolinux/isolinux.cfg",
            "/boot/grub/grub.cfg",
            "/EFI/BOOT/grub.cfg",
        ] {
            if let Ok(Some(cfg)) = img.read_file(path) {
                let cfg = String::from_utf8_lossy(&cfg);
                let _ = cmdline::isolinux_append(&cfg);
                let _ = cmdline::grub_linux_args(&cfg);
            }
        }
    }
    if let Ok(vols) = fat::volumes(&bytes) {
        for v in vols {
            if let Ok(entries) = v.root_entries(&bytes) {
                for e in entries.iter().take(8) {
                    let _ = v.read_root_file(&bytes, &e.short_name);
                }
            }
        }
    }
    if let Some(s) = text(data) {
        let (_, _) = cmdline::agent_params(s, Some(s));
    }
}
