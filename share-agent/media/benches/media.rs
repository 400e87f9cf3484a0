//! Cost of boot media, printed as a small report (`cargo bench -p boot-media`):
//! - CPU time and bytes allocated on disk per parameter image (floppy and hard disk);
//! - boot ISO build time in-process beside xorriso building the same tree;
//! - bytes added to the share per extra node deployed from an already-cached image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boot_media::{
    BootIsoSpec, BootIsoStore, CacheConfig, ImageCache, ImageForm, ImageRef, Loaders, Parameters,
    parameter_image, write_atomic,
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

fn bench_parameter_images(tmp: &Path) -> anyhow::Result<()> {
    println!("== parameter image");
    for form in [ImageForm::Floppy, ImageForm::HardDisk] {
        let n = 300;
        let params: Vec<Parameters> = (0..n).map(node_params).collect::<Result<_, _>>()?;
        let (c0, w0) = (cpu_time(), Instant::now());
        for p in &params {
            std::hint::black_box(parameter_image(p, form)?);
        }
        let (build_cpu, build_wall) = (cpu_time() - c0, w0.elapsed());
        let dir = tmp.join(format!("params-{form:?}"));
        std::fs::create_dir_all(&dir)?;
        let (c0, w0) = (cpu_time(), Instant::now());
        let mut alloc = 0;
        for (i, p) in params.iter().enumerate() {
            let s = write_atomic(
                &dir.join(format!("node-{i}.img")),
                &parameter_image(p, form)?,
                true,
            )?;
            alloc += s.bytes_allocated;
        }
        let (write_cpu, write_wall) = (cpu_time() - c0, w0.elapsed());
        println!(
            "{form:?}: {} bytes logical; build {:.0} us CPU ({:.0} us wall) per image; build+sparse atomic write {:.0} us CPU ({:.0} us wall) per image; {} bytes allocated per image",
            form.size_bytes(),
            build_cpu.as_secs_f64() * 1e6 / n as f64,
            build_wall.as_secs_f64() * 1e6 / n as f64,
            write_cpu.as_secs_f64() * 1e6 / n as f64,
            write_wall.as_secs_f64() * 1e6 / n as f64,
            alloc / n as u64,
        );
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
            let img = parameter_image(&node_params(n)?, ImageForm::Floppy)?;
            write_atomic(&share.join(format!("nodes/node-{n}.img")), &img, true)?;
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
        write_atomic(
            &p,
            &parameter_image(&node_params(1)?, ImageForm::Floppy)?,
            true,
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

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs this too; keep that quick.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    bench_parameter_images(tmp.path())?;
    let inp = iso_inputs(tmp.path())?;
    bench_iso(tmp.path(), &inp)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench_extra_node(tmp.path(), &inp))?;
    Ok(())
}
