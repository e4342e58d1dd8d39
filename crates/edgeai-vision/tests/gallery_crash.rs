//! Crash safety: a child process enrols identities in a loop and is killed with SIGKILL;
//! the reopened gallery must hold every identity whose enrolment the child reported as
//! committed, and nothing half-written.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use edgeai_testutil::{child_arg, child_test};
use edgeai_vision::{Gallery, GalleryConfig};

const DIM: usize = 16;

fn embedding(i: usize, j: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 31 + j * 7 + d * 13) % 17) as f32 - 8.0 + 0.5)
        .collect()
}

fn config() -> GalleryConfig {
    GalleryConfig {
        dim: DIM,
        ..GalleryConfig::default()
    }
}

/// The child: runs only when re-executed by `killed_writer_loses_no_committed_identity`.
#[test]
fn crash_child() {
    let Some(path) = child_arg() else {
        return;
    };
    let mut g = Gallery::open(PathBuf::from(path), config()).expect("child opens gallery");
    for i in 0.. {
        let name = format!("person-{i}");
        // three embeddings per identity, so a torn enrolment would be visible
        let embs: Vec<Vec<f32>> = (0..3).map(|j| embedding(i, j)).collect();
        g.enroll(&name, &embs).expect("enroll");
        // Printed only after the transaction committed.
        println!("COMMITTED {name}");
    }
}

#[test]
fn killed_writer_loses_no_committed_identity() {
    if child_arg().is_some() {
        return;
    }
    let path = std::env::temp_dir().join(format!("edgeai-crash-{}.sqlite", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut child = child_test("crash_child", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut committed = Vec::new();
    let start = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(name) = line.strip_prefix("COMMITTED ") {
            committed.push(name.to_string());
        }
        // Kill mid-stream: after 40 commits, or after 20 s whatever happened.
        if committed.len() >= 40 || start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    child.kill().expect("SIGKILL the child"); // SIGKILL on Unix
    let _ = child.wait();
    assert!(
        committed.len() >= 5,
        "the child committed only {} enrolments before the deadline",
        committed.len()
    );

    let g = Gallery::open(&path, config()).expect("reopen after kill -9");
    let listed = g.list();
    for name in &committed {
        let n = listed
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .unwrap_or(0);
        assert_eq!(
            n, 3,
            "`{name}` was reported committed but has {n} embeddings"
        );
    }
    // Identities beyond the reported ones (committed but not yet printed) are whole too.
    for (name, n) in &listed {
        assert_eq!(*n, 3, "`{name}` is torn: {n} embeddings");
    }
    println!(
        "child committed {} enrolments before SIGKILL; reopened gallery holds {}",
        committed.len(),
        listed.len()
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
