//! `vmedia media ...`: build boot media locally with the `boot-media` crate, exactly as a
//! share agent does (same bytes), for inspection, pre-seeding a share or tests.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use boot_media::{BootIsoSpec, DeployIsoSpec, ImageForm, Loaders, Parameters};

/// Build boot media locally.
#[derive(Debug, clap::Subcommand)]
pub enum MediaCommand {
    /// Build a parameter image (FAT, label ir-vfd-dev, parameters.txt).
    Floppy {
        /// A parameter, KEY=VALUE; repeat for more (order is kept).
        #[arg(long = "param", value_name = "KEY=VALUE", required = true)]
        params: Vec<String>,
        /// Build the 4 MiB hard-disk form instead of a 1440 KiB floppy.
        #[arg(long)]
        hd: bool,
        /// Output file (written atomically and sparse).
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a bootable ISO (BIOS isolinux and/or UEFI GRUB) from a kernel and initramfs.
    BootIso {
        #[command(flatten)]
        common: IsoArgs,
        /// Kernel command line.
        #[arg(long, default_value = "")]
        cmdline: String,
        /// ISO volume id.
        #[arg(long, default_value = "VMEDIA_BOOT")]
        volume_id: String,
    },
    /// Build a deploy ISO: `boot_method=vmedia` plus shared parameters on the cmdline.
    DeployIso {
        #[command(flatten)]
        common: IsoArgs,
        /// A shared parameter, KEY=VALUE (no whitespace in VALUE); repeat for more.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Appended to the cmdline verbatim (e.g. "console=ttyS0,115200").
        #[arg(long, default_value = "")]
        extra_cmdline: String,
    },
    /// Build an OpenStack config drive (ISO 9660, label config-2) from metadata files,
    /// as a share agent builds it from instance_info.configdrive's JSON form.
    Configdrive(crate::media_configdrive::ConfigDriveArgs),
}

/// Inputs shared by the ISO commands.
#[derive(Debug, clap::Args)]
pub struct IsoArgs {
    #[arg(long)]
    kernel: PathBuf,
    #[arg(long)]
    initrd: PathBuf,
    /// Add a BIOS boot entry (default: both BIOS and UEFI when neither flag is given).
    #[arg(long)]
    bios: bool,
    /// Add a UEFI boot entry.
    #[arg(long)]
    uefi: bool,
    /// isolinux.bin to use.
    #[arg(long, default_value = "/usr/lib/ISOLINUX/isolinux.bin")]
    isolinux: PathBuf,
    /// ldlinux.c32 to use.
    #[arg(long, default_value = "/usr/lib/syslinux/modules/bios/ldlinux.c32")]
    ldlinux: PathBuf,
    /// A prebuilt BOOTX64.EFI; default: build one with grub-mkstandalone.
    #[arg(long)]
    grub_efi: Option<PathBuf>,
    /// Output file (written atomically).
    #[arg(long)]
    out: PathBuf,
}

impl IsoArgs {
    fn flags(&self) -> (bool, bool) {
        if self.bios || self.uefi {
            (self.bios, self.uefi)
        } else {
            (true, true)
        }
    }
    fn loaders(&self) -> Loaders {
        Loaders {
            isolinux_bin: self.isolinux.clone(),
            ldlinux_c32: self.ldlinux.clone(),
            grub_efi: self.grub_efi.clone(),
            ..Loaders::default()
        }
    }
}

fn parse_params(args: &[String]) -> anyhow::Result<Parameters> {
    let mut p = Parameters::new();
    for a in args {
        let (k, v) = Parameters::parse_pair(a)?;
        p.push(k, v)?;
    }
    Ok(p)
}

/// Run one `vmedia media` command.
pub async fn run(cmd: MediaCommand) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .context("media task failed")?
}

fn run_blocking(cmd: MediaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MediaCommand::Floppy { params, hd, out } => {
            let params = parse_params(&params)?;
            let form = if hd {
                ImageForm::HardDisk
            } else {
                ImageForm::Floppy
            };
            let bytes = boot_media::parameter_image(&params, form)?;
            let stats = boot_media::write_atomic(&out, &bytes, true)?;
            println!(
                "{}: {form:?} parameter image, {} bytes, {} bytes allocated",
                out.display(),
                stats.bytes_written,
                stats.bytes_allocated
            );
        }
        MediaCommand::BootIso {
            common,
            cmdline,
            volume_id,
        } => {
            let (bios, uefi) = common.flags();
            let spec = BootIsoSpec {
                kernel: common.kernel.clone(),
                initrd: common.initrd.clone(),
                cmdline,
                bios,
                uefi,
                loaders: common.loaders(),
                volume_id,
            };
            let stats = boot_media::build_boot_iso(&spec, &common.out)?;
            println!(
                "{}: boot ISO (bios={bios}, uefi={uefi}), {} bytes in {} ms, key {}",
                common.out.display(),
                stats.bytes,
                stats.elapsed.as_millis(),
                boot_media::boot_iso_key(&spec)?
            );
        }
        MediaCommand::DeployIso {
            common,
            params,
            extra_cmdline,
        } => {
            let (bios, uefi) = common.flags();
            let spec = DeployIsoSpec {
                kernel: common.kernel.clone(),
                ramdisk: common.initrd.clone(),
                params: parse_params(&params)?,
                extra_cmdline,
                bios,
                uefi,
                loaders: common.loaders(),
            };
            let stats = boot_media::build_deploy_iso(&spec, &common.out)?;
            println!(
                "{}: deploy ISO (bios={bios}, uefi={uefi}), {} bytes in {} ms, cmdline {:?}",
                common.out.display(),
                stats.bytes,
                stats.elapsed.as_millis(),
                spec.to_boot_spec()?.cmdline
            );
        }
        MediaCommand::Configdrive(a) => println!("{}", crate::media_configdrive::run(a)?),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: MediaCommand,
    }

    fn parse(args: &[&str]) -> MediaCommand {
        Cli::try_parse_from(std::iter::once("media").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    fn have(tool: &str) -> bool {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool} >/dev/null"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok || std::env::var_os("CI").is_none(),
            "{tool} missing in CI"
        );
        ok
    }

    #[test]
    fn floppy_and_hd_images_read_back_in_mtools() {
        if !have("mtype") {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        for (hd, name, size) in [(false, "fd.img", 1_474_560), (true, "hd.img", 4 << 20)] {
            let out = d.path().join(name);
            let out_s = out.to_str().unwrap();
            let mut args = vec![
                "floppy",
                "--param",
                "ipa-api-url=http://127.0.0.1:1",
                "--param",
                "k=a=b",
                "--out",
                out_s,
            ];
            if hd {
                args.push("--hd");
            }
            assert_eq!(run_blocking(parse(&args)).unwrap(), ExitCode::SUCCESS);
            assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
            let text = std::process::Command::new("mtype")
                .args(["-i", out_s, "::parameters.txt"])
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&text.stdout),
                "ipa-api-url=http://127.0.0.1:1\nk=a=b\n"
            );
        }
        // Bad parameters are errors, not panics.
        let out = d.path().join("bad.img");
        assert!(
            run_blocking(parse(&[
                "floppy",
                "--param",
                "novalue",
                "--out",
                out.to_str().unwrap()
            ]))
            .is_err()
        );
        assert!(!out.exists());
    }

    #[test]
    fn bios_boot_iso_is_built() {
        let loaders = Loaders::default();
        if !loaders.isolinux_bin.exists() || !have("xorriso") {
            assert!(std::env::var_os("CI").is_none(), "isolinux missing in CI");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let (k, i, out) = (
            d.path().join("k"),
            d.path().join("i"),
            d.path().join("b.iso"),
        );
        std::fs::write(&k, vec![0x5a; 100_000]).unwrap();
        std::fs::write(&i, vec![0xa5; 200_000]).unwrap();
        let cmd = parse(&[
            "boot-iso",
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            i.to_str().unwrap(),
            "--cmdline",
            "console=ttyS0 x=1",
            "--bios",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run_blocking(cmd).unwrap(), ExitCode::SUCCESS);
        let report = std::process::Command::new("xorriso")
            .args([
                "-indev",
                out.to_str().unwrap(),
                "-report_el_torito",
                "plain",
            ])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&report.stdout);
        assert!(
            report.contains("BIOS") && !report.contains("UEFI"),
            "{report}"
        );
    }
}
