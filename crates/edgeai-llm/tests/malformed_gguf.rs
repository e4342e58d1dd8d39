//! Regression tests for malformed GGUF files found while hardening the loader: each must be
//! an error, without allocating what the file's header claims.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use edgeai_core::quant::GgmlType;
use edgeai_llm::gguf::{writer::GgufWriter, GgufFile, Value};
use edgeai_llm::LlamaModel;

/// Records the largest single allocation of the process.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the bookkeeping is one
// atomic, which neither allocates nor re-enters.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

/// `llama.block_count` = 2^24 - 1 in a file with one tensor: the loader used to reserve
/// space for 16.7 million layers (about 5.5 GB) before finding the first one missing.
#[test]
fn absurd_block_count_does_not_reserve_layers() {
    let bytes = GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.embedding_length", Value::U32(32))
        .kv("llama.attention.head_count", Value::U32(4))
        .kv("llama.feed_forward_length", Value::U32(64))
        .kv("llama.context_length", Value::U32(64))
        .kv("llama.block_count", Value::U32((1 << 24) - 1))
        .tensor("token_embd.weight", &[32, 4], GgmlType::F32, vec![0; 512])
        .build();
    let g = GgufFile::from_bytes(bytes).unwrap();
    let e = LlamaModel::from_gguf(g).unwrap_err().to_string();
    assert!(
        e.contains("blk.0.attn_norm.weight") && e.contains("missing"),
        "{e}"
    );
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}
