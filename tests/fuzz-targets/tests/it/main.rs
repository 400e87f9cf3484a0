//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) and the real fixtures
//! through every target on the stable toolchain. Any panic is a failure; so is a target
//! without a corpus, or a corpus directory without a target.

use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn every_corpus_input_parses_without_a_panic() {
    let root = corpus_root();
    let mut total = 0usize;
    for (name, target) in fuzz_targets::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!("no corpus for fuzz target {name} in {}: {e}", dir.display())
            })
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of {name} is empty");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", f.display());
        }
        eprintln!("{name}: {} inputs replayed", files.len());
        total += files.len();
    }
    eprintln!("{total} corpus inputs replayed");
    for e in std::fs::read_dir(&root).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            fuzz_targets::TARGETS.iter().any(|(n, _)| *n == name),
            "fuzz/corpus/{name} has no target in fuzz_targets::TARGETS"
        );
    }
}

#[test]
fn every_target_has_a_libfuzzer_wrapper() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in fuzz_targets::TARGETS {
        let file = dir.join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("fuzz_targets::{name}(")),
            "{} does not call fuzz_targets::{name}",
            file.display()
        );
    }
}
