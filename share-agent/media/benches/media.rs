//! Cost of boot media, printed as a small report (`cargo bench -p boot-media`):
//! - CPU time and bytes allocated on disk per parameter image (floppy and hard disk): the
//!   old dense build against the sparse one, and each fsync policy of the sparse write;
//! - boot ISO build time in-process beside xorriso building the same tree;
//! - bytes added to the share per extra node deployed from an already-cached image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boot_media::{
    BootIsoSpec, BootIsoStore, CacheConfig, Durability, ImageCache, ImageForm, ImageRef, Loaders,
    Parameters, parameter_image, parameter_image_sparse, write_atomic, write_atomic_sparse,
    write_atomic_sparse_with,
};

fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
            };
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

fn node_params(n: usize) -> anyhow::Result<Parameters> {
    Ok(Parameters::from_pairs([
        (
            "ipa-api-url".to_string(),
            "http://10.0.0.1:6385".to_string(),
        ),
        (
            "ipa-agent-token".to_string(),
            format!("token-{n:08}-0123456789abcdef"),
        ),
        (
            "BOOTIF".to_string(),
            format!("01-52-54-00-00-{:02x}-{:02x}", n / 256 % 256, n % 256),
        ),
        ("boot_method".to_string(), "vmedia".to_string()),
        (
            "ipa-global-request-id".to_string(),
            format!("req-00000000-0000-4000-8000-{n:012}"),
        ),
    ])?)
}

fn pseudo_random_file(path: &Path, len: usize, seed: u64) -> anyhow::Result<()> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    std::fs::write(path, v).with_context(|| format!("write {}", path.display()))
}

fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                total += allocated(&e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `f` once per item and returns (CPU, wall) per call in microseconds.
fn per_call<T>(
    items: &[T],
    mut f: impl FnMut(usize, &T) -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    let (c0, w0) = (cpu_time(), Instant::now());
    for (i, x) in items.iter().enumerate() {
        f(i, x)?;
    }
    let n = items.len().max(1) as f64;
    Ok((
        (cpu_time() - c0).as_secs_f64() * 1e6 / n,
        w0.elapsed().as_secs_f64() * 1e6 / n,
    ))
}

/// One way of building (and maybe writing) a parameter image.
#[derive(Debug, Clone, Copy)]
enum Variant {
    /// The old dense build.
    DenseBuild,
    /// `parameter_image`: sparse build expanded to a Vec.
    SparseToVec,
    /// `parameter_image_sparse`.
    SparseBuild,
    /// Dense build + `write_atomic(.., sparse = true)`: the old per-node path.
    DenseWrite,
    /// Sparse build + `write_atomic_sparse_with`; `true` replaces existing files.
    SparseWrite(Durability, bool),
}

impl Variant {
    fn label(self) -> String {
        match self {
            Variant::DenseBuild => "build: dense (format a zeroed buffer)".into(),
            Variant::SparseToVec => "build: sparse, then to_vec()".into(),
            Variant::SparseBuild => "build: sparse".into(),
            Variant::DenseWrite => {
                "build + write: dense, write_atomic (zero scan, fsync file + dir)".into()
            }
            Variant::SparseWrite(d, replace) => format!(
                "build + write: sparse, write_atomic_sparse fsync {}{}",
                match d {
                    Durability::FileAndDir => "file + dir",
                    Durability::File => "file only",
                    Durability::None => "none",
                },
                if replace { ", replacing" } else { "" }
            ),
        }
    }
}

fn bench_parameter_images(tmp: &Path) -> anyhow::Result<()> {
    const ROUNDS: usize = 5;
    const N: usize = 200;
    println!(
        "== parameter image: per image, median (min) of {ROUNDS} rounds of {N}; CPU = user + system time of this process"
    );
    let variants = [
        Variant::DenseBuild,
        Variant::SparseToVec,
        Variant::SparseBuild,
        Variant::DenseWrite,
        Variant::SparseWrite(Durability::FileAndDir, false),
        Variant::SparseWrite(Durability::File, false),
        Variant::SparseWrite(Durability::None, false),
        Variant::SparseWrite(Durability::None, true),
    ];
    for form in [ImageForm::Floppy, ImageForm::HardDisk] {
        let params: Vec<Parameters> = (0..N).map(node_params).collect::<Result<_, _>>()?;
        anyhow::ensure!(
            boot_media::parameter_image_dense(&params[0], form)?
                == parameter_image(&params[0], form)?,
            "the dense reference build differs from parameter_image"
        );
        // Warm the per-form template so the first sparse build is not charged for it.
        parameter_image_sparse(&params[0], form)?;
        println!("{form:?} ({} bytes logical):", form.size_bytes());
        let mut samples = vec![Vec::new(); variants.len()];
        let mut alloc = vec![0; variants.len()];
        // Rounds interleave the variants so background noise (writeback of earlier
        // rounds, other processes) spreads over all of them.
        for round in 0..ROUNDS {
            for (v, variant) in variants.iter().enumerate() {
                // New files in a fresh directory (a node's first deploy), or replacing
                // files written beforehand (a re-run prepare job).
                let dir = tmp.join(format!("params-{form:?}-{round}-{v}"));
                std::fs::create_dir_all(&dir)?;
                let file = |i: usize| dir.join(format!("node-{i}.img"));
                if let Variant::SparseWrite(_, true) = variant {
                    for (i, p) in params.iter().enumerate() {
                        write_atomic_sparse(&file(i), &parameter_image_sparse(p, form)?)?;
                    }
                }
                let sample = per_call(&params, |i, p| {
                    match *variant {
                        Variant::DenseBuild => {
                            std::hint::black_box(boot_media::parameter_image_dense(p, form)?);
                        }
                        Variant::SparseToVec => {
                            std::hint::black_box(parameter_image(p, form)?);
                        }
                        Variant::SparseBuild => {
                            std::hint::black_box(parameter_image_sparse(p, form)?);
                        }
                        Variant::DenseWrite => {
                            let s = write_atomic(
                                &file(i),
                                &boot_media::parameter_image_dense(p, form)?,
                                true,
                            )?;
                            alloc[v] = s.bytes_allocated;
                        }
                        Variant::SparseWrite(d, _) => {
                            let img = parameter_image_sparse(p, form)?;
                            alloc[v] = write_atomic_sparse_with(&file(i), &img, d)?.bytes_allocated;
                        }
                    }
                    Ok(())
                })?;
                samples[v].push(sample);
            }
        }
        for (v, variant) in variants.iter().enumerate() {
            let stat = |pick: fn(&(f64, f64)) -> f64| {
                let mut xs: Vec<f64> = samples[v].iter().map(pick).collect();
                xs.sort_by(f64::total_cmp);
                (xs[xs.len() / 2], xs[0])
            };
            let ((cpu, cpu_min), (wall, wall_min)) = (stat(|s| s.0), stat(|s| s.1));
            let bytes = if alloc[v] > 0 {
                format!(", {} bytes allocated", alloc[v])
            } else {
                String::new()
            };
            println!(
                "  {:<72} {cpu:7.1} ({cpu_min:6.1}) us CPU {wall:7.1} ({wall_min:6.1}) us wall{bytes}",
                variant.label()
            );
        }
    }
    Ok(())
}

struct IsoInputs {
    kernel: PathBuf,
    initrd: PathBuf,
    loaders: Loaders,
    uefi: bool,
}

fn iso_inputs(tmp: &Path) -> anyhow::Result<IsoInputs> {
    let kernel = tmp.join("vmlinuz");
    pseudo_random_file(&kernel, 8 << 20, 11)?;
    let initrd = tmp.join("initrd");
    pseudo_random_file(&initrd, 64 << 20, 12)?;
    let mut loaders = Loaders::default();
    let uefi = have("grub-mkstandalone");
    if uefi {
        let efi = tmp.join("BOOTX64.EFI");
        boot_media::iso::build_grub_efi(&loaders.grub_mkstandalone, &efi)?;
        loaders.grub_efi = Some(efi);
    }
    Ok(IsoInputs {
        kernel,
        initrd,
        loaders,
        uefi,
    })
}

fn bench_iso(tmp: &Path, inp: &IsoInputs) -> anyhow::Result<()> {
    println!(
        "== boot ISO (8 MiB kernel + 64 MiB initrd, BIOS{})",
        if inp.uefi { " + UEFI" } else { "" }
    );
    if !inp.loaders.isolinux_bin.exists() {
        println!("skipped: {} missing", inp.loaders.isolinux_bin.display());
        return Ok(());
    }
    let mut spec = BootIsoSpec::new(
        &inp.kernel,
        &inp.initrd,
        "console=ttyS0,115200 boot_method=vmedia",
    );
    spec.loaders = inp.loaders.clone();
    spec.uefi = inp.uefi;
    let out = tmp.join("hadris.iso");
    let mut best = Duration::MAX;
    let mut cpu_best = Duration::MAX;
    let mut size = 0;
    for _ in 0..3 {
        let c0 = cpu_time();
        let s = boot_media::build_boot_iso(&spec, &out)?;
        best = best.min(s.elapsed);
        cpu_best = cpu_best.min(cpu_time() - c0);
        size = s.bytes;
    }
    println!(
        "in-process (hadris-iso): {:.0} ms wall, {:.0} ms CPU, {size} bytes (best of 3)",
        best.as_secs_f64() * 1e3,
        cpu_best.as_secs_f64() * 1e3
    );

    if !have("xorriso") {
        println!("xorriso: skipped (not installed)");
        return Ok(());
    }
    // The same tree, staged on disk for xorriso.
    let stage = tmp.join("stage");
    std::fs::create_dir_all(stage.join("isolinux"))?;
    std::fs::create_dir_all(stage.join("boot/grub"))?;
    std::fs::copy(&inp.kernel, stage.join("boot/vmlinuz"))?;
    std::fs::copy(&inp.initrd, stage.join("boot/initrd"))?;
    std::fs::copy(
        &inp.loaders.isolinux_bin,
        stage.join("isolinux/isolinux.bin"),
    )?;
    std::fs::copy(&inp.loaders.ldlinux_c32, stage.join("isolinux/ldlinux.c32"))?;
    std::fs::write(
        stage.join("isolinux/isolinux.cfg"),
        boot_media::iso::isolinux_cfg(&spec.cmdline),
    )?;
    std::fs::write(
        stage.join("boot/grub/grub.cfg"),
        boot_media::iso::grub_cfg(&spec.cmdline),
    )?;
    let mut args: Vec<String> = [
        "-as",
        "mkisofs",
        "-quiet",
        "-R",
        "-V",
        "VMEDIA_BOOT",
        "-b",
        "isolinux/isolinux.bin",
        "-c",
        "isolinux/boot.cat",
        "-no-emul-boot",
        "-boot-load-size",
        "4",
        "-boot-info-table",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let (true, Some(efi)) = (inp.uefi, &inp.loaders.grub_efi) {
        std::fs::write(
            stage.join("isolinux/efiboot.img"),
            boot_media::iso::efi_boot_image(&std::fs::read(efi)?)?,
        )?;
        args.extend(
            [
                "-eltorito-alt-boot",
                "-e",
                "isolinux/efiboot.img",
                "-no-emul-boot",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    let xout = tmp.join("xorriso.iso");
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let _ = std::fs::remove_file(&xout);
        let t = Instant::now();
        let st = Command::new("xorriso")
            .args(&args)
            .arg("-o")
            .arg(&xout)
            .arg(&stage)
            .output()?;
        anyhow::ensure!(
            st.status.success(),
            "xorriso failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        best = best.min(t.elapsed());
    }
    println!(
        "xorriso -as mkisofs (same tree, already staged): {:.0} ms wall, {} bytes (best of 3)",
        best.as_secs_f64() * 1e3,
        std::fs::metadata(&xout)?.len()
    );
    Ok(())
}

async fn bench_extra_node(tmp: &Path, inp: &IsoInputs) -> anyhow::Result<()> {
    println!("== bytes on the share per extra node (deploy ISO + 32 MiB instance image cached)");
    let image = {
        let p = tmp.join("instance.img");
        pseudo_random_file(&p, 32 << 20, 13)?;
        bytes::Bytes::from(std::fs::read(&p)?)
    };
    let app = axum::Router::new().route(
        "/instance.img",
        axum::routing::get(move || {
            let b = image.clone();
            async move { b }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/instance.img", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let share = tmp.join("share");
    std::fs::create_dir_all(share.join("nodes"))?;
    let cache = ImageCache::new(CacheConfig {
        share_root: share.clone(),
        dir: "cache".into(),
        max_bytes: 1 << 30,
        ttl: Duration::from_secs(3600),
        glance: None,
        http: reqwest::Client::new(),
    })?;
    let store = std::sync::Arc::new(BootIsoStore::new(&share, "boot-iso")?);
    let mut spec = BootIsoSpec::new(
        &inp.kernel,
        &inp.initrd,
        "console=ttyS0,115200 boot_method=vmedia",
    );
    spec.loaders = inp.loaders.clone();
    spec.uefi = inp.uefi;
    let r = ImageRef::parse(&url)?;

    let deploy_node = |n: usize| {
        let (cache, store, spec, r, share) = (
            &cache,
            store.clone(),
            spec.clone(),
            r.clone(),
            share.clone(),
        );
        async move {
            cache.fetch(&r, None, &format!("node-{n}")).await?;
            store.get_or_build_async(spec, format!("node-{n}")).await?;
            let img = parameter_image_sparse(&node_params(n)?, ImageForm::Floppy)?;
            write_atomic_sparse(&share.join(format!("nodes/node-{n}.img")), &img)?;
            anyhow::Ok(())
        }
    };
    deploy_node(0).await?;
    let first = allocated(&share);
    let extra = 20;
    let t = Instant::now();
    for n in 1..=extra {
        deploy_node(n).await?;
    }
    let per = (allocated(&share) - first) / extra as u64;
    let floppy_alloc = {
        let p = tmp.join("one.img");
        write_atomic_sparse(
            &p,
            &parameter_image_sparse(&node_params(1)?, ImageForm::Floppy)?,
        )?
        .bytes_allocated
    };
    println!(
        "first node: {first} bytes on the share; each extra node: {per} bytes (parameter image alone: {floppy_alloc} bytes); {:.1} ms per extra node (hashing memoised)",
        t.elapsed().as_secs_f64() * 1e3 / extra as f64
    );
    server.abort();
    Ok(())
}

/// Config drives from the JSON form: build the ISO, gzip + base64 it; and the check of a
/// given encoded drive (base64 + gunzip).
fn bench_configdrive() -> anyhow::Result<()> {
    use boot_media::configdrive::{self, ConfigDriveData};
    println!("== config drive (JSON form -> config-2 ISO -> gzip + base64), per node");
    let ud =
        "#cloud-config\nusers:\n  - name: ops\n    ssh_authorized_keys: [ssh-ed25519 AAAA ops]\n"
            .repeat(8);
    let items: Vec<serde_json::Value> = (0..200)
        .map(|i| {
            serde_json::json!({
                "meta_data": {"hostname": format!("node-{i}"), "public_keys": {"ops": "ssh-ed25519 AAAA ops"}},
                "user_data": ud,
                "network_data": {"links": [{"id": "p0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01", "mtu": 1500}],
                                 "networks": [{"id": "n0", "link": "p0", "type": "ipv4_dhcp"}], "services": []},
            })
        })
        .collect();
    let mut iso_len = 0;
    let mut enc_len = 0;
    let (cpu, wall) = per_call(&items, |i, v| {
        let d = ConfigDriveData::from_json(v)?.with_node_defaults(&format!("uuid-{i}"), None);
        let iso = d.build_iso()?;
        iso_len = iso.len();
        enc_len = configdrive::encode(&iso).len();
        Ok(())
    })?;
    println!(
        "build + encode: {cpu:.0} us CPU, {wall:.0} us wall; ISO {iso_len} bytes, sent as {enc_len} characters (inline up to {})",
        configdrive::INLINE_LIMIT
    );
    let enc: Vec<String> = items
        .iter()
        .take(50)
        .map(|v| Ok(ConfigDriveData::from_json(v)?.build_encoded()?))
        .collect::<anyhow::Result<_>>()?;
    let (cpu, wall) = per_call(&enc, |_, e| {
        configdrive::decode(e, "n")?;
        Ok(())
    })?;
    println!("check of a given encoded drive: {cpu:.0} us CPU, {wall:.0} us wall");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs this too; keep that quick.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    if std::env::args().skip(1).any(|a| a == "configdrive") {
        return bench_configdrive();
    }
    bench_parameter_images(tmp.path())?;
    // `cargo bench -p boot-media -- params` stops here.
    if std::env::args().skip(1).any(|a| a == "params") {
        return Ok(());
    }
    let inp = iso_inputs(tmp.path())?;
    bench_iso(tmp.path(), &inp)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench_extra_node(tmp.path(), &inp))?;
    bench_configdrive()
}
