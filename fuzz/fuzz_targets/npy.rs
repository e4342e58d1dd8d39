//! The `.npy` reader on arbitrary bytes; whatever it accepts must write back and re-read to
//! the same tensor.
#![no_main]

use edgeai_core::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = npy::from_bytes(data) else {
        return;
    };
    assert_eq!(t.len(), t.shape().iter().product::<usize>());
    // The data section alone is at least the tensor's bytes: nothing was invented.
    assert!(
        t.len() * t.dtype().size() <= data.len(),
        "{:?} from {} bytes",
        t.shape(),
        data.len()
    );
    let bytes = npy::to_bytes(&t).expect("a tensor read from .npy writes back");
    // Compare the bytes written again, not the tensors: NaN != NaN for floats.
    let again = npy::from_bytes(&bytes).expect("our own .npy reads back");
    assert_eq!(again.shape(), t.shape());
    assert_eq!(npy::to_bytes(&again).expect("writes back"), bytes);
});
