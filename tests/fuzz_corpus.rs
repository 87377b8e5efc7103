//! Every committed fuzz corpus file (fuzz/corpus/<target>/) through its target's body once: the
//! fast regression slice of the fuzzing (README "Fuzzing"). A file that once crashed a target is
//! added to its corpus, so the crash stays fixed.

use std::path::Path;

#[test]
fn every_corpus_file_runs_through_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, run) in wgvit::fuzz::TARGETS {
        let dir = corpus.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(files.len() >= 5, "{}: only {} corpus files", dir.display(), files.len());
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            run(&bytes);
        }
    }
}
