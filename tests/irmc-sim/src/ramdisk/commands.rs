//! Agent extensions and command results, shaped exactly like ironic-python-agent's:
//! `{"id","command_name","command_params","command_status","command_result","command_error"}`,
//! errors `{"type","code","message","details"}`.
//!
//! Synchronous commands finish before the POST returns; asynchronous ones are recorded as
//! RUNNING, run in a task, and force a heartbeat when they finish. While the last command is
//! RUNNING every new command is refused with 409 "Agent is busy".

use std::sync::Arc;

use md5::Digest;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::validation::{check_disk_format, partition_layout, validate_image_info};
use super::{Agent, DiskTarget, logs};
use crate::node::DiskSlot;

/// Device name reported for the simulated local disk.
pub const DISK_DEVICE: &str = "/dev/sda";

/// IPA's command states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandStatus {
    Running,
    Succeeded,
    Failed,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Running => "RUNNING",
            CommandStatus::Succeeded => "SUCCEEDED",
            CommandStatus::Failed => "FAILED",
        }
    }
}

/// One entry of the agent's command list.
#[derive(Clone, Debug)]
pub struct CommandRecord {
    pub id: String,
    /// Without the extension prefix ("execute_deploy_step").
    pub command_name: String,
    pub command_params: Value,
    pub status: CommandStatus,
    pub result: Value,
    pub error: Value,
}

impl CommandRecord {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "command_name": self.command_name,
            "command_params": self.command_params,
            "command_status": self.status.as_str(),
            "command_result": self.result,
            "command_error": self.error,
        })
    }
}

/// An IPA REST error: HTTP status plus the JSON body IPA sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub kind: String,
    pub message: String,
    pub details: String,
}

impl ApiError {
    pub fn new(code: u16, kind: &str, message: &str, details: &str) -> Self {
        ApiError {
            code,
            kind: kind.into(),
            message: message.into(),
            details: details.into(),
        }
    }
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "code": self.code, "message": self.message, "details": self.details})
    }
}

/// What the last successful image write left on the disk.
#[derive(Clone, Debug)]
pub(crate) struct Written {
    pub image_id: String,
    /// Whole-disk images: the disk identifier; partition images: the root partition UUID.
    pub root_uuid: String,
    pub efi_uuid: Option<String>,
    pub partition: bool,
}

fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

enum Kind {
    Sync,
    Async,
}

fn lookup_command(name: &str) -> Result<(&'static str, Kind), ApiError> {
    let (ext, cmd) = name.split_once('.').unwrap_or((name, ""));
    let known_ext = [
        "deploy", "standby", "image", "log", "system", "clean", "flow", "rescue", "poll", "service",
    ];
    if !known_ext.contains(&ext) {
        return Err(ApiError::new(
            404,
            "RequestedObjectNotFoundError",
            "Requested object not found",
            &format!("Extension with id {ext} not found."),
        ));
    }
    let found = match (ext, cmd) {
        ("deploy", "get_deploy_steps") => ("get_deploy_steps", Kind::Sync),
        ("deploy", "execute_deploy_step") => ("execute_deploy_step", Kind::Async),
        ("standby", "prepare_image") => ("prepare_image", Kind::Async),
        ("standby", "get_partition_uuids") => ("get_partition_uuids", Kind::Sync),
        ("standby", "power_off") => ("power_off", Kind::Async),
        ("standby", "run_image") | ("standby", "reboot") => ("run_image", Kind::Async),
        ("standby", "sync") => ("sync", Kind::Sync),
        ("image", "install_bootloader") => ("install_bootloader", Kind::Async),
        ("log", "collect_system_logs") => ("collect_system_logs", Kind::Sync),
        ("system", "lockdown") => ("lockdown", Kind::Async),
        _ => {
            return Err(ApiError::new(
                400,
                "InvalidCommandError",
                "Invalid command",
                &format!("Unknown command: {name}"),
            ));
        }
    };
    Ok(found)
}

fn deploy_steps() -> Value {
    json!({
        "deploy_steps": {"GenericHardwareManager": [
            {"step": "erase_devices_metadata", "priority": 0, "interface": "deploy",
             "reboot_requested": false, "abortable": false, "argsinfo": null},
            {"step": "write_image", "priority": 0, "interface": "deploy",
             "reboot_requested": false, "abortable": false,
             "argsinfo": {
                 "image_info": {"description": "Information about the image to write", "required": true},
                 "configdrive": {"description": "Configdrive to write", "required": false}}},
        ]},
        "hardware_manager_version": {"generic_hardware_manager": "1.2"},
    })
}

/// Run (or start) a command; returns its serialised record.
pub(crate) async fn execute(
    agent: &Arc<Agent>,
    name: &str,
    params: Value,
    wait: bool,
) -> Result<Value, ApiError> {
    let (short, kind) = lookup_command(name)?;
    // Validation IPA runs before an async command starts (an HTTP 400, no record).
    if short == "prepare_image" {
        validate_image_info(
            params.get("image_info").unwrap_or(&Value::Null),
            agent.md5_allowed,
        )?;
    }
    let id = random_uuid();
    {
        let mut cmds = agent.commands.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = cmds.last()
            && last.status == CommandStatus::Running
        {
            return Err(ApiError::new(
                409,
                "AgentIsBusy",
                "Agent is busy",
                &format!("Executing command: {}", last.command_name),
            ));
        }
        cmds.push(CommandRecord {
            id: id.clone(),
            command_name: short.to_string(),
            command_params: params.clone(),
            status: CommandStatus::Running,
            result: Value::Null,
            error: Value::Null,
        });
    }
    agent.log(format!("command {name} ({id}) started"));
    match kind {
        Kind::Sync => {
            let outcome = run_sync(agent, short, &params);
            Ok(finish(agent, &id, outcome))
        }
        Kind::Async => {
            let (tx, rx) = oneshot::channel();
            let a = agent.clone();
            let id2 = id.clone();
            let short2 = short.to_string();
            agent.spawn(async move {
                let outcome = run_async(&a, &short2, &params).await;
                let v = finish(&a, &id2, outcome);
                // IPA forces a heartbeat in the finally block of every async command.
                a.force.notify_one();
                after_async(&a, &short2);
                let _ = tx.send(v);
            });
            if wait {
                rx.await.map_err(|_| {
                    ApiError::new(
                        500,
                        "CommandExecutionError",
                        "Command execution failed",
                        "agent stopping",
                    )
                })
            } else {
                Ok(snapshot(agent, &id))
            }
        }
    }
}

fn snapshot(agent: &Agent, id: &str) -> Value {
    agent
        .commands
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|c| c.id == id)
        .map(CommandRecord::to_json)
        .unwrap_or(Value::Null)
}

fn finish(agent: &Agent, id: &str, outcome: Result<Value, ApiError>) -> Value {
    let mut cmds = agent.commands.lock().unwrap_or_else(|e| e.into_inner());
    let Some(c) = cmds.iter_mut().find(|c| c.id == id) else {
        return Value::Null;
    };
    match outcome {
        Ok(v) => {
            c.status = CommandStatus::Succeeded;
            c.result = v;
        }
        Err(e) => {
            c.status = CommandStatus::Failed;
            c.error = e.to_json();
        }
    }
    let v = c.to_json();
    drop(cmds);
    agent.log(format!("command {id} finished: {}", v["command_status"]));
    v
}

/// Side effects that happen after the command is marked done.
fn after_async(agent: &Arc<Agent>, short: &str) {
    match short {
        "power_off" | "run_image" => {
            let a = agent.clone();
            let off = short == "power_off";
            let delay = agent.timing.power_off_delay;
            agent.spawn(async move {
                tokio::time::sleep(delay).await;
                a.log(if off { "powering off" } else { "rebooting" });
                if off {
                    a.host.power_off();
                } else {
                    a.host.reboot();
                }
            });
        }
        "lockdown" => {
            let a = agent.clone();
            agent.spawn(async move {
                // Let the HTTP reply go out before the API disappears.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                a.lockdown.notify_one();
            });
        }
        _ => {}
    }
}

fn run_sync(agent: &Agent, short: &str, _params: &Value) -> Result<Value, ApiError> {
    match short {
        "get_deploy_steps" => Ok(deploy_steps()),
        "get_partition_uuids" => {
            let w = agent
                .written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            Ok(match w {
                None => json!({}),
                Some(w) if !w.partition => json!({"root uuid": w.root_uuid}),
                // IPA 13.0 `work_on_disk`: the devices it created, the root file
                // system's UUID and the ESP's (null under BIOS); the PReP key only
                // on ppc64.
                Some(w) => {
                    let mut parts = serde_json::Map::new();
                    if w.efi_uuid.is_some() {
                        parts.insert(
                            "efi system partition".into(),
                            json!(format!("{DISK_DEVICE}1")),
                        );
                    }
                    parts.insert(
                        "root".into(),
                        json!(format!(
                            "{DISK_DEVICE}{}",
                            if w.efi_uuid.is_some() { 2 } else { 1 }
                        )),
                    );
                    json!({
                        "root uuid": w.root_uuid,
                        "efi system partition uuid": w.efi_uuid,
                        "partitions": parts,
                    })
                }
            })
        }
        "sync" => Ok(Value::Null),
        "collect_system_logs" => {
            let journal = agent
                .journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .join("\n");
            Ok(json!({"system_logs": logs::tar_gz_base64(&[("journal", journal.as_bytes())])}))
        }
        _ => Err(ApiError::new(
            500,
            "CommandExecutionError",
            "Command execution failed",
            short,
        )),
    }
}

async fn run_async(agent: &Arc<Agent>, short: &str, params: &Value) -> Result<Value, ApiError> {
    match short {
        "execute_deploy_step" => {
            let step = params.get("step").cloned().unwrap_or(Value::Null);
            let step_name = step.get("step").and_then(Value::as_str).unwrap_or_default();
            let args = step.get("args").cloned().unwrap_or_else(|| json!({}));
            let deploy_result = match step_name {
                "write_image" => {
                    // What the conductor sent, for tests comparing conductors.
                    agent
                        .host
                        .publish("ipa_write_image_args", &args.to_string());
                    let info = args.get("image_info").unwrap_or(&Value::Null);
                    validate_image_info(info, agent.md5_allowed)?;
                    let w = write_image(agent, info).await?;
                    json!({"result": prepare_image_message(&w)})
                }
                "erase_devices_metadata" => Value::Null,
                other => {
                    return Err(ApiError::new(
                        400,
                        "InvalidCommandParamsError",
                        "Invalid command parameters",
                        &format!("Deploy step {other} is not supported by any hardware manager"),
                    ));
                }
            };
            Ok(json!({"deploy_result": deploy_result, "deploy_step": step}))
        }
        "prepare_image" => {
            let info = params.get("image_info").unwrap_or(&Value::Null);
            let w = write_image(agent, info).await?;
            Ok(json!({"result": format!("prepare_image: {}", prepare_image_message(&w))}))
        }
        "install_bootloader" => {
            if agent
                .written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
            {
                return Err(ApiError::new(
                    500,
                    "CommandExecutionError",
                    "Command execution failed",
                    &format!(
                        "Installing the bootloader failed: no image was written to {DISK_DEVICE}"
                    ),
                ));
            }
            Ok(Value::Null)
        }
        "power_off" | "run_image" | "lockdown" => Ok(Value::Null),
        _ => Err(ApiError::new(
            500,
            "CommandExecutionError",
            "Command execution failed",
            short,
        )),
    }
}

fn prepare_image_message(w: &Written) -> String {
    let mut m = format!("image ({}) written to device {DISK_DEVICE}", w.image_id);
    if w.partition {
        m.push_str(&format!(" root_uuid={}", w.root_uuid));
        if let Some(e) = &w.efi_uuid {
            m.push_str(&format!(" efi_system_partition_uuid={e}"));
        }
    }
    m
}

enum Verifier {
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Verifier {
    fn for_algo(algo: &str) -> Option<Self> {
        match algo.to_ascii_lowercase().as_str() {
            "md5" => Some(Verifier::Md5(md5::Md5::new())),
            "sha256" => Some(Verifier::Sha256(sha2::Sha256::new())),
            "sha512" => Some(Verifier::Sha512(sha2::Sha512::new())),
            _ => None,
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Verifier::Md5(h) => h.update(b),
            Verifier::Sha256(h) => h.update(b),
            Verifier::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> String {
        match self {
            Verifier::Md5(h) => hex::encode(h.finalize()),
            Verifier::Sha256(h) => hex::encode(h.finalize()),
            Verifier::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Which algorithm and expected value to check, from image_info.
fn expected_checksum(info: &Value) -> Result<(String, String), ApiError> {
    let os_algo = info
        .get("os_hash_algo")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let os_value = info
        .get("os_hash_value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !os_algo.is_empty() && !os_value.is_empty() {
        return Ok((os_algo.to_ascii_lowercase(), os_value.to_ascii_lowercase()));
    }
    let c = info
        .get("checksum")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // "algo:value" is accepted too; otherwise the length tells the algorithm.
    if let Some((a, v)) = c.split_once(':')
        && matches!(a.to_ascii_lowercase().as_str(), "md5" | "sha256" | "sha512")
    {
        return Ok((a.to_ascii_lowercase(), v.to_ascii_lowercase()));
    }
    let algo = match c.len() {
        32 => "md5",
        64 => "sha256",
        128 => "sha512",
        _ => {
            return Err(ApiError::new(
                400,
                "InvalidCommandParamsError",
                "Invalid command parameters",
                &format!(
                    "Cannot tell the checksum algorithm of {c:?} (checksum URLs are not simulated)"
                ),
            ));
        }
    };
    Ok((algo.to_string(), c.to_ascii_lowercase()))
}

/// Download `urls[0]`, write it to the disk while hashing, verify the checksum.
async fn write_image(agent: &Arc<Agent>, info: &Value) -> Result<Written, ApiError> {
    let image_id = info
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let url = info
        .pointer("/urls/0")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (algo, want) = expected_checksum(info)?;
    let partition = info.get("image_type").and_then(Value::as_str) == Some("partition");
    let declared_format = info.get("disk_format").and_then(Value::as_str);
    // IPA streams a raw image straight onto the disk (after partitioning, for a
    // partition image); anything else is downloaded first, then inspected and written.
    let streamed = info
        .get("stream_raw_images")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && declared_format == Some("raw");
    if streamed && partition {
        partition_layout(info, None)?;
    }
    let mut head: Vec<u8> = Vec::with_capacity(8);
    let mut verifier = Verifier::for_algo(&algo).ok_or_else(|| {
        ApiError::new(
            400,
            "InvalidCommandParamsError",
            "Invalid command parameters",
            &format!("Unsupported checksum algorithm {algo}"),
        )
    })?;
    let download_error = |reason: String| {
        ApiError::new(
            500,
            "ImageDownloadError",
            "Error downloading image",
            &format!("Download of image {image_id} failed: URL: {url}; reason: {reason}"),
        )
    };
    agent.log(format!("write_image: downloading {url}"));
    // The disk's identity is its sha256; when the checksum is sha256 too, hash only once.
    let mut disk_hash = (!matches!(verifier, Verifier::Sha256(_))).then(sha2::Sha256::new);
    let mut written: u64 = 0;
    let path = match &agent.disk {
        DiskTarget::HashOnly => None,
        DiskTarget::File(p) => Some(p.clone()),
    };
    let mut file = match &path {
        Some(p) => Some(tokio::fs::File::create(p).await.map_err(|e| {
            ApiError::new(
                500,
                "ImageWriteError",
                "Error writing image to device",
                &format!(
                    "Writing image to device {DISK_DEVICE} failed: {}: {e}",
                    p.display()
                ),
            )
        })?),
        None => None,
    };
    // Anything that fails after the first byte leaves a garbled disk behind.
    let garbled = |agent: &Agent, written: u64| {
        agent.host.disk_written(DiskSlot {
            sha256: None,
            bytes: written,
            path: path.clone(),
        });
        *agent.written.lock().unwrap_or_else(|e| e.into_inner()) = None;
    };
    let started = Instant::now();
    let result: Result<(), ApiError> = async {
        let mut resp = agent
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| download_error(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(download_error(format!(
                "HTTP status {}",
                resp.status().as_u16()
            )));
        }
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| download_error(e.to_string()))?
        {
            verifier.update(&chunk);
            if head.len() < 8 {
                let take = (8 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            if let Some(h) = disk_hash.as_mut() {
                h.update(&chunk);
            }
            if let Some(f) = file.as_mut() {
                f.write_all(&chunk).await.map_err(|e| {
                    ApiError::new(
                        500,
                        "ImageWriteError",
                        "Error writing image to device",
                        &format!("Writing image to device {DISK_DEVICE} failed: {e}"),
                    )
                })?;
            }
            written += chunk.len() as u64;
            if let Some(bw) = agent.timing.bandwidth.filter(|b| *b > 0) {
                // Sleep until the average rate is back under the limit.
                let due = started + std::time::Duration::from_secs_f64(written as f64 / bw as f64);
                tokio::time::sleep_until(due).await;
            }
        }
        if let Some(f) = file.as_mut() {
            f.flush().await.map_err(|e| download_error(e.to_string()))?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        garbled(agent, written);
        agent.log(format!("write_image failed: {}", e.details));
        return Err(e);
    }
    let got = verifier.finish();
    if got != want {
        garbled(agent, written);
        let e = ApiError::new(
            500,
            "ImageChecksumError",
            "Error verifying image checksum",
            &format!(
                "Image failed to verify against checksum. location: {url}; image ID: {image_id}; image checksum: {got}; verification checksum: {want}"
            ),
        );
        agent.log(format!("write_image failed: {}", e.details));
        return Err(e);
    }
    if !streamed {
        let checked = check_disk_format(declared_format, &head).and_then(|()| {
            if partition {
                partition_layout(info, Some(written.div_ceil(1 << 20)))
            } else {
                Ok(())
            }
        });
        if let Err(e) = checked {
            garbled(agent, written);
            agent.log(format!("write_image failed: {}", e.details));
            return Err(e);
        }
    }
    let sha = match disk_hash {
        Some(h) => hex::encode(h.finalize()),
        None => got,
    };
    let uefi = info.get("deploy_boot_mode").and_then(Value::as_str) == Some("uefi");
    let w = Written {
        image_id,
        root_uuid: if partition {
            random_uuid()
        } else {
            format!("0x{}", &sha[..8])
        },
        efi_uuid: (partition && uefi).then(random_uuid),
        partition,
    };
    agent.host.disk_written(DiskSlot {
        sha256: Some(sha),
        bytes: written,
        path,
    });
    *agent.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(w.clone());
    agent.log(format!(
        "write_image: {written} bytes written to {DISK_DEVICE}"
    ));
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_algorithm_choice() {
        let c = |v: Value| expected_checksum(&v).unwrap();
        assert_eq!(c(json!({"checksum": "A".repeat(32)})).0, "md5");
        assert_eq!(c(json!({"checksum": "a".repeat(64)})).0, "sha256");
        assert_eq!(c(json!({"checksum": "a".repeat(128)})).0, "sha512");
        assert_eq!(
            c(json!({"checksum": "x", "os_hash_algo": "SHA256", "os_hash_value": "AB"})),
            ("sha256".into(), "ab".into())
        );
        assert_eq!(
            c(json!({"checksum": "sha512:ff"})),
            ("sha512".into(), "ff".into())
        );
        assert!(expected_checksum(&json!({"checksum": "http://x/sums"})).is_err());
    }

    #[test]
    fn unknown_commands() {
        assert_eq!(lookup_command("nope.x").err().map(|e| e.code), Some(404));
        let e = lookup_command("deploy.nope").err().unwrap();
        assert_eq!(e.code, 400);
        assert_eq!(e.details, "Unknown command: deploy.nope");
        assert!(lookup_command("image.install_bootloader").is_ok());
    }

    #[test]
    fn uuid_shape() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
